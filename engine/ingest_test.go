package engine

import (
	"bytes"
	"context"
	"crypto/md5"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/mosaicimg/mosaic/chunker"
)

// memStore is an in-memory ChunkStore for engine tests.
type memStore struct {
	mu sync.Mutex
	m  map[ChunkID][]byte
}

func newMemStore() *memStore { return &memStore{m: map[ChunkID][]byte{}} }

func (s *memStore) Get(_ context.Context, id ChunkID, buf []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[id]
	if !ok {
		return nil, ErrNotFound
	}
	out := append(buf[:0], b...)
	if SumChunk(out) != id {
		return nil, &CorruptError{ID: id, Got: SumChunk(out)}
	}
	return out, nil
}

func (s *memStore) Put(_ context.Context, id ChunkID, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = append([]byte(nil), data...)
	return nil
}

func (s *memStore) Has(_ context.Context, id ChunkID) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	return ok, nil
}

func (s *memStore) Sync(context.Context) error { return nil }

func TestIngestRoundTripsAnyStream(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name  string
		size  int
		block int
	}{
		{"empty", 0, 0},
		{"tiny", 100, 0},
		{"one block", 4 << 20, 0},
		{"many small blocks", 9<<20 + 12345, 256 << 10},
		{"odd blocks", 7<<20 + 1, 300 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := make([]byte, tc.size)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			// Zero runs must come back as zeros without being stored.
			if tc.size > 3<<20 {
				clear(data[1<<20 : 3<<20])
			}
			st := newMemStore()
			g, err := NewIngester(st, nil, IngestConfig{Chunking: chunker.DefaultParams, BlockSize: tc.block, Workers: 3})
			if err != nil {
				t.Fatal(err)
			}
			for round := 0; round < 3; round++ { // repeat: races show up as missing bytes
				res, err := g.Ingest(context.Background(), bytes.NewReader(data), IngestOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if res.Size != int64(len(data)) || res.Manifest.Size != res.Size {
					t.Fatalf("size %d manifest %d, want %d", res.Size, res.Manifest.Size, len(data))
				}
				if sum := md5.Sum(data); !bytes.Equal(res.MD5, sum[:]) {
					t.Fatal("md5 differs")
				}
				m, err := LoadManifest(context.Background(), st, res.Root)
				if err != nil {
					t.Fatal(err)
				}
				rd := NewImageReader(m, st, NewChunkCache(64<<20), DefaultReaderConfig())
				var out bytes.Buffer
				if _, err := rd.WriteTo(&out); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(out.Bytes(), data) {
					t.Fatal("read back differs from the stream")
				}
				rd.Close()
			}
		})
	}
}
