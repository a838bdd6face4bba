package engine

import (
	"bytes"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/chunker"
)

// slowStore delays every Get and records which chunks were read and how
// many reads ran at once.
type slowStore struct {
	*memStore
	delay time.Duration

	mu      sync.Mutex
	got     map[ChunkID]int
	running int
	peak    int
}

func (s *slowStore) Get(ctx context.Context, id ChunkID, buf []byte) ([]byte, error) {
	s.mu.Lock()
	s.got[id]++
	s.running++
	s.peak = max(s.peak, s.running)
	s.mu.Unlock()
	time.Sleep(s.delay)
	defer func() { s.mu.Lock(); s.running--; s.mu.Unlock() }()
	return s.memStore.Get(ctx, id, buf)
}

func (s *slowStore) loaded(m *Manifest, from, to int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for i := from; i < to; i++ {
		if s.got[m.Chunks[i].ID] > 0 {
			n++
		}
	}
	return n
}

// waitLoaded waits until chunks [from, to) have all been read, or fails.
func (s *slowStore) waitLoaded(t *testing.T, m *Manifest, from, to int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); s.loaded(m, from, to) < to-from; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("read-ahead loaded %d of chunks %d..%d", s.loaded(m, from, to), from, to-1)
		}
	}
}

// One sequential read starts read-ahead that keeps going without further
// calls until the whole window is loaded, never more than
// maxReadAheadWorkers loads at a time and nothing past the window; a new
// sequential run behind the last one moves the window back.
func TestReadAheadFillsItsWindowWithoutFurtherReads(t *testing.T) {
	mem := newMemStore()
	g, err := NewIngester(mem, nil, IngestConfig{Chunking: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 32 << 10, Align: 4 << 10, Normalization: 2}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	data := make([]byte, 8<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	res, err := g.Ingest(context.Background(), bytes.NewReader(data), IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m := res.Manifest
	if len(m.Chunks) < 100 {
		t.Fatalf("want a long manifest, got %d chunks", len(m.Chunks))
	}
	st := &slowStore{memStore: mem, delay: 3 * time.Millisecond, got: map[ChunkID]int{}}
	const window = 24
	r := NewImageReader(m, st, NewChunkCache(64<<20), ReaderConfig{ReadAhead: window})

	// Read the first chunk: read-ahead covers the next 24.
	buf := make([]byte, m.Chunks[0].Size)
	if _, err := r.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, data[:len(buf)]) {
		t.Fatalf("read: %v", err)
	}
	st.waitLoaded(t, m, 1, 1+window)
	if err := r.Close(); err != nil { // waits for the workers
		t.Fatal(err)
	}
	if n := st.loaded(m, 1+window, len(m.Chunks)); n != 0 {
		t.Errorf("read-ahead loaded %d chunks past its window", n)
	}
	if st.peak > maxReadAheadWorkers {
		t.Errorf("%d loads ran at once, want at most %d", st.peak, maxReadAheadWorkers)
	}

	// Jump to chunk 60 and read on sequentially: the window follows.
	i := 60
	off := m.Chunks[i].Offset
	for k := range 2 {
		c := m.Chunks[i+k]
		if _, err := r.ReadAt(buf[:c.Size], c.Offset); err != nil || !bytes.Equal(buf[:c.Size], data[c.Offset:c.Offset+int64(c.Size)]) {
			t.Fatalf("read at %d: %v", off, err)
		}
	}
	st.waitLoaded(t, m, i+2, i+2+window)

	// Back to the start: a new run well behind the window starts over.
	i = 30
	c := m.Chunks[i]
	if _, err := r.ReadAt(buf[:c.Size], c.Offset); err != nil {
		t.Fatal(err)
	}
	c = m.Chunks[i+1]
	if _, err := r.ReadAt(buf[:c.Size], c.Offset); err != nil {
		t.Fatal(err)
	}
	st.waitLoaded(t, m, i+2, i+2+window)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for id, n := range st.got {
		if n > 1 {
			t.Errorf("chunk %s read %d times; the cache holds the whole image", id, n)
		}
	}
}
