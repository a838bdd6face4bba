package engine

import "context"

// ImageStore holds image records. Implementations replicate them (raftmeta)
// and are safe for concurrent use. Reads are linearizable unless the context
// carries LocalRead. Records returned are copies the caller owns.
type ImageStore interface {
	// GetImage returns the record, or an error matching ErrNotFound.
	GetImage(ctx context.Context, id string) (*Image, error)
	// ListImages returns copies of the records for which match returns
	// true. match runs under the store's read lock: it must be quick and
	// must not call the store.
	ListImages(ctx context.Context, match func(*Image) bool) ([]*Image, error)
	// CreateImage stores a new record with Revision 1 and returns it.
	// ErrExists if the ID is taken.
	CreateImage(ctx context.Context, img *Image) (*Image, error)
	// UpdateImage replaces the record if its revision is still ifRevision,
	// and returns the stored record (with Revision ifRevision+1).
	// ErrConflict if the revision moved, ErrNotFound if the record is gone.
	UpdateImage(ctx context.Context, img *Image, ifRevision uint64) (*Image, error)
	// DeleteImage removes the record if its revision is still ifRevision.
	DeleteImage(ctx context.Context, id string, ifRevision uint64) error
}

type localReadKey struct{}

// LocalRead returns a context asking stores to serve reads from local,
// possibly stale, state instead of a linearizable read. Used where staleness
// is harmless and latency matters (the FUSE tree, background jobs).
func LocalRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, localReadKey{}, true)
}

// IsLocalRead reports whether ctx asks for local reads.
func IsLocalRead(ctx context.Context) bool {
	v, _ := ctx.Value(localReadKey{}).(bool)
	return v
}
