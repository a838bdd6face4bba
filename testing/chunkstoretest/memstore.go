package chunkstoretest

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// MemStore is an in-memory engine.GCStore. It encodes chunks exactly as the
// Pebble store does (so a pipeline writing to it does the same CPU work) and
// keeps them in a map. Sync does nothing: nothing here is durable.
type MemStore struct {
	mu     sync.RWMutex
	chunks map[engine.ChunkID][]byte
	// Now may be replaced to control first-written times.
	Now func() time.Time
}

var _ engine.GCStore = (*MemStore)(nil)

var encBufs = sync.Pool{New: func() any { b := make([]byte, 0, 320<<10); return &b }}

// NewMemStore returns an empty store.
func NewMemStore() *MemStore {
	return &MemStore{chunks: map[engine.ChunkID][]byte{}, Now: time.Now}
}

// Get implements engine.ChunkStore.
func (m *MemStore) Get(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	m.mu.RLock()
	enc, ok := m.chunks[id]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("memstore: get %s: %w", id, engine.ErrNotFound)
	}
	out, err := engine.DecodeChunk(id, enc, buf)
	if err != nil {
		return nil, fmt.Errorf("memstore: get: %w", err)
	}
	return out, nil
}

// Put implements engine.ChunkStore.
func (m *MemStore) Put(ctx context.Context, id engine.ChunkID, data []byte) error {
	bp := encBufs.Get().(*[]byte)
	*bp = engine.EncodeChunk((*bp)[:0], data, m.Now())
	enc := append([]byte(nil), *bp...) // exact size, not zeroed first
	encBufs.Put(bp)
	m.mu.Lock()
	if _, ok := m.chunks[id]; !ok {
		m.chunks[id] = enc
	}
	m.mu.Unlock()
	return nil
}

// Has implements engine.ChunkStore.
func (m *MemStore) Has(ctx context.Context, id engine.ChunkID) (bool, error) {
	m.mu.RLock()
	_, ok := m.chunks[id]
	m.mu.RUnlock()
	return ok, nil
}

// Sync implements engine.ChunkStore.
func (m *MemStore) Sync(ctx context.Context) error { return nil }

// GetEncoded returns the stored encoding of a chunk.
func (m *MemStore) GetEncoded(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	m.mu.RLock()
	enc, ok := m.chunks[id]
	m.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("memstore: get %s: %w", id, engine.ErrNotFound)
	}
	return append(buf[:0], enc...), nil
}

// PutEncoded stores an already encoded chunk as is.
func (m *MemStore) PutEncoded(ctx context.Context, id engine.ChunkID, enc []byte) error {
	if _, err := engine.ParseChunkHeader(enc); err != nil {
		return fmt.Errorf("memstore: put %s: %w", id, err)
	}
	m.mu.Lock()
	m.chunks[id] = append([]byte(nil), enc...)
	m.mu.Unlock()
	return nil
}

// ListChunks implements engine.GCStore.
func (m *MemStore) ListChunks(ctx context.Context) iter.Seq2[engine.ChunkInfo, error] {
	return func(yield func(engine.ChunkInfo, error) bool) {
		m.mu.RLock()
		infos := make([]engine.ChunkInfo, 0, len(m.chunks))
		for id, enc := range m.chunks {
			h, _ := engine.ParseChunkHeader(enc)
			infos = append(infos, engine.ChunkInfo{ID: id, Size: h.Size, StoredSize: uint32(len(enc)), WrittenAt: h.WrittenAt})
		}
		m.mu.RUnlock()
		for _, info := range infos {
			if err := ctx.Err(); err != nil {
				yield(engine.ChunkInfo{}, err)
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}

// DeleteChunks implements engine.GCStore.
func (m *MemStore) DeleteChunks(ctx context.Context, ids []engine.ChunkID) error {
	m.mu.Lock()
	for _, id := range ids {
		delete(m.chunks, id)
	}
	m.mu.Unlock()
	return nil
}

// Len returns the number of stored chunks.
func (m *MemStore) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.chunks)
}
