package engine

import (
	"errors"
	"fmt"
)

// Error kinds. Other packages wrap these (fmt.Errorf("op: %w", err)) and
// never define parallel ones; edges translate them once (HTTP status, errno).
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrConflict    = errors.New("conflict")
	ErrInvalid     = errors.New("invalid")
	ErrCorrupt     = errors.New("corrupt")
	ErrForbidden   = errors.New("forbidden")
	ErrNotLeader   = errors.New("not the leader")
	ErrUnavailable = errors.New("unavailable")
	// ErrTooLarge: a size or count limit was exceeded (HTTP 413).
	ErrTooLarge = errors.New("too large")
	// ErrGone: the object disappeared while the operation ran (HTTP 410).
	ErrGone = errors.New("gone")
	// ErrUnsupported: the request's media type or feature is not supported (HTTP 415).
	ErrUnsupported = errors.New("unsupported")
	// ErrNoSpace: the store is out of space (HTTP 413, as Glance's StorageFull).
	ErrNoSpace = errors.New("no space left")
)

// UserError is an error whose message is meant for the API user (Glance
// puts such explanations in its error bodies). Kind is one of the sentinels
// above, so errors.Is(err, ErrNotFound) works through it.
type UserError struct {
	Kind error
	Msg  string
}

func (e *UserError) Error() string { return e.Msg }

// Is reports whether target is the error's kind.
func (e *UserError) Is(target error) bool { return target == e.Kind }

// Errorf returns a *UserError of the given kind with a formatted message.
func Errorf(kind error, format string, args ...any) error {
	return &UserError{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

// UserMessage returns the user-facing message carried by err, if any.
func UserMessage(err error) (string, bool) {
	var ue *UserError
	if errors.As(err, &ue) {
		return ue.Msg, true
	}
	return "", false
}

// CorruptError reports a stored chunk whose bytes do not hash to its ID.
type CorruptError struct {
	ID  ChunkID
	Got ChunkID
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("chunk %s is corrupt (content hashes to %s)", e.ID, e.Got)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
