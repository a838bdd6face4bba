package fusefs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// ImageSource is what the tree needs from the engine; *engine.Service
// implements it.
type ImageSource interface {
	Get(ctx context.Context, id string) (*engine.Image, error)
	List(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error)
	OpenRecord(ctx context.Context, img *engine.Image) (*engine.ImageReader, error)
}

// Options configure the tree and its mount. The zero value gives the
// defaults described on each field.
type Options struct {
	Logger *slog.Logger
	// EntryTimeout is how long the kernel may cache a name (default 1 h).
	// Names only change when images appear, vanish or are renamed, and the
	// watcher invalidates them then, so this can be long.
	EntryTimeout time.Duration
	// AttrTimeout is how long the kernel may cache attributes (default
	// 1 h). An inode is one image's immutable content; a zero timeout
	// would cost a GETATTR round trip per read.
	AttrTimeout time.Duration
	// NegativeTimeout is how long the kernel may remember that a name does
	// not exist (default 1 s): the bound on how late a new image can
	// appear if the watcher's invalidation is lost.
	NegativeTimeout time.Duration
	// PollInterval is how often the watcher compares image records with
	// what the kernel may have cached (default 250 ms).
	PollInterval time.Duration
	// ReadAheadKB is the read-ahead of the mount's backing device info
	// (/sys/class/bdi/<dev>/read_ahead_kb), set right after mounting.
	// Default 1024 (one full 1 MiB request; the kernel's default for FUSE
	// is 128). Negative leaves the kernel's value.
	ReadAheadKB int
	// Signatures, if set, verifies signed images at open (EACCES when the
	// signature does not verify; the mount's --verify-signatures) and
	// reports user.mosaic.signature.
	Signatures SignatureChecker
	// LocalCopies, if set, offers complete local copies of images; an open
	// of an image that has one uses FUSE passthrough (the kernel reads the
	// copy directly, at native speed) where the kernel supports it.
	LocalCopies LocalCopies
	// OpenImages, if set, counts open files per image content, for the
	// node's garbage collector (an engine.RootSource): an image deleted
	// while open keeps its chunks until its last file is closed. Default:
	// a set of the tree's own (see Server.OpenImages).
	OpenImages *OpenImages
	// NoPassthrough serves local copies through the process instead of
	// FUSE passthrough (what happens anyway where the kernel refuses it).
	NoPassthrough bool
}

// LocalCopies finds complete local copies of images, written from
// verified chunks; *engine.ImageCache implements it.
type LocalCopies interface {
	// OpenCopy returns a read-only file holding exactly img's content, or
	// false if there is none.
	OpenCopy(ctx context.Context, img *engine.Image) (*os.File, bool)
	// InUse is told of an open that found no copy (the cache may decide to
	// make one) and returns what to call when that file is closed.
	InUse(img *engine.Image) (closed func())
}

// Validate fills in defaults and checks the options.
func (o *Options) Validate() error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.EntryTimeout == 0 {
		o.EntryTimeout = time.Hour
	}
	if o.AttrTimeout == 0 {
		o.AttrTimeout = time.Hour
	}
	if o.NegativeTimeout == 0 {
		o.NegativeTimeout = time.Second
	}
	if o.OpenImages == nil {
		o.OpenImages = NewOpenImages()
	}
	if o.PollInterval == 0 {
		o.PollInterval = 250 * time.Millisecond
	}
	if o.ReadAheadKB == 0 {
		o.ReadAheadKB = 1024
	}
	if o.EntryTimeout < 0 || o.AttrTimeout < 0 || o.NegativeTimeout < 0 || o.PollInterval < 0 {
		return errors.New("fusefs: options: negative timeout or poll interval")
	}
	return nil
}
