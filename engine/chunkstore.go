package engine

import (
	"context"
	"iter"
)

// ChunkStore holds chunks by ID. Implementations verify every chunk they
// return against its ID. All methods are safe for concurrent use.
type ChunkStore interface {
	// Get returns the verified, uncompressed chunk, reusing buf when it is
	// large enough. It returns an error matching ErrNotFound if the chunk is
	// absent and ErrCorrupt (a *CorruptError) if the stored bytes do not hash
	// to id.
	Get(ctx context.Context, id ChunkID, buf []byte) ([]byte, error)
	// Put stores data under id. It is idempotent and may return before the
	// write is durable; the caller guarantees SumChunk(data) == id.
	Put(ctx context.Context, id ChunkID, data []byte) error
	// Has reports whether the chunk is present (perhaps not yet durable).
	Has(ctx context.Context, id ChunkID) (bool, error)
	// Sync makes durable every Put that returned before Sync was called,
	// including Puts made by other goroutines.
	Sync(ctx context.Context) error
}

// GCStore is what garbage collection needs from a store.
type GCStore interface {
	ChunkStore
	// ListChunks yields every stored chunk with its stored (on-disk) size and
	// the Unix time (seconds) it was first written.
	ListChunks(ctx context.Context) iter.Seq2[ChunkInfo, error]
	// DeleteChunks removes the chunks; absent ones are ignored.
	DeleteChunks(ctx context.Context, ids []ChunkID) error
}

// ChunkInfo describes one stored chunk.
type ChunkInfo struct {
	ID ChunkID
	// Size is the uncompressed length.
	Size uint32
	// StoredSize is the number of bytes the encoded chunk occupies.
	StoredSize uint32
	// WrittenAt is the Unix time in seconds the chunk was first written.
	WrittenAt int64
}
