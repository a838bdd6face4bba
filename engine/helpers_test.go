package engine_test

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
)

type env struct {
	images *chunkstoretest.MemImages
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
	e := &env{images: chunkstoretest.NewMemImages(), store: store, pins: engine.NewPins()}
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
