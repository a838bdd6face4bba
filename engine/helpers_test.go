package engine_test

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
)

// memImages is an in-memory engine.ImageStore for engine tests; raftmeta
// is the real one. beforeUpdate, when set, runs before each update.
type memImages struct {
	mu           sync.Mutex
	m            map[string]*engine.Image
	beforeUpdate func(img *engine.Image)
}

func newMemImages() *memImages { return &memImages{m: map[string]*engine.Image{}} }

func (s *memImages) GetImage(ctx context.Context, id string) (*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.m[id]
	if !ok {
		return nil, engine.ErrNotFound
	}
	return img.Clone(), nil
}

func (s *memImages) ListImages(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*engine.Image
	for _, img := range s.m {
		if match == nil || match(img) {
			out = append(out, img.Clone())
		}
	}
	return out, nil
}

func (s *memImages) CreateImage(ctx context.Context, img *engine.Image) (*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[img.ID]; ok {
		return nil, engine.ErrExists
	}
	img = img.Clone()
	img.Revision = 1
	s.m[img.ID] = img
	return img.Clone(), nil
}

func (s *memImages) UpdateImage(ctx context.Context, img *engine.Image, ifRevision uint64) (*engine.Image, error) {
	if f := s.beforeUpdate; f != nil {
		f(img)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[img.ID]
	if !ok {
		return nil, engine.ErrNotFound
	}
	if cur.Revision != ifRevision {
		return nil, engine.ErrConflict
	}
	img = img.Clone()
	img.Revision = ifRevision + 1
	s.m[img.ID] = img
	return img.Clone(), nil
}

func (s *memImages) DeleteImage(ctx context.Context, id string, ifRevision uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

type env struct {
	images *memImages
	store  engine.GCStore
	pins   *engine.Pins
	svc    *engine.Service
	gc     *engine.Collector
}

func newEnv(t *testing.T, store engine.GCStore) *env {
	t.Helper()
	if store == nil {
		store = chunkstoretest.NewMemStore()
	}
	e := &env{images: newMemImages(), store: store, pins: engine.NewPins()}
	var err error
	cfg := engine.ServiceConfig{NodeID: "n1"}
	cfg.Ingest.Chunking.Min, cfg.Ingest.Chunking.Avg, cfg.Ingest.Chunking.Max = 4<<10, 16<<10, 64<<10
	cfg.Ingest.Chunking.Align, cfg.Ingest.Chunking.Normalization = 4096, 2
	cfg.Ingest.BlockSize = 256 << 10
	e.svc, err = engine.NewService(cfg, e.images, store, e.pins, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.gc = engine.NewCollector(e.images, store, e.pins, engine.GCConfig{}, nil)
	return e
}

func (e *env) upload(t *testing.T, data []byte) *engine.Image {
	t.Helper()
	img, err := e.svc.Create(t.Context(), &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	img, err = e.svc.Upload(t.Context(), img.ID, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	return img
}

func (e *env) readAll(t *testing.T, id string) []byte {
	t.Helper()
	r, _, err := e.svc.Open(t.Context(), id)
	if err != nil {
		t.Fatalf("open %s: %v", id, err)
	}
	defer r.Close()
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatalf("read %s: %v", id, err)
	}
	return buf.Bytes()
}

func (e *env) chunkCount(t *testing.T) int {
	t.Helper()
	n := 0
	for _, err := range e.store.ListChunks(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 77))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

var _ io.Reader = (*bytes.Reader)(nil)
