package fusefs

import (
	"context"
	"errors"
	"log/slog"
	"syscall"

	"github.com/mosaicimg/mosaic/engine"
)

// errnoFor translates an engine error into an errno, logging the ones that
// are not a plain answer. It is the one place errors become errnos.
func errnoFor(log *slog.Logger, op, name string, err error) syscall.Errno {
	switch {
	case errors.Is(err, engine.ErrNotFound):
		return syscall.ENOENT
	case errors.Is(err, engine.ErrForbidden):
		return syscall.EACCES
	case errors.Is(err, context.Canceled):
		return syscall.EINTR
	}
	log.Error("fuse operation failed", "op", op, "name", name, "err", err)
	return syscall.EIO
}
