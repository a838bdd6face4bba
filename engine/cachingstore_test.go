package engine_test

import (
	"bytes"
	"context"
	"errors"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
	"sync/atomic"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
)

// countingSource is a storage node seen from a mount host: it counts
// fetches and can be made to return damaged bytes.
type countingSource struct {
	*cacheTestChunks
	gets    atomic.Int64
	corrupt atomic.Bool
}

func (s *countingSource) Get(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	s.gets.Add(1)
	b, err := s.cacheTestChunks.Get(ctx, id, buf)
	if err == nil && s.corrupt.Load() {
		b[0] ^= 1 // a flipped bit on the wire
	}
	return b, err
}

func chunkOf(i, size int) ([]byte, engine.ChunkID) {
	b := bytes.Repeat([]byte{byte(i), byte(i >> 8), 7}, size/3)
	return b, engine.SumChunk(b)
}

func TestCachingStoreFetchesVerifiesAndEvicts(t *testing.T) {
	ctx := context.Background()
	src := &countingSource{cacheTestChunks: &cacheTestChunks{m: map[engine.ChunkID][]byte{}}}
	var ids []engine.ChunkID
	for i := range 6 {
		b, id := chunkOf(i, 30000)
		src.Put(ctx, id, b)
		ids = append(ids, id)
	}
	dir := t.TempDir()
	local, err := pebblestore.Open(pebblestore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// Room for three of the six chunks.
	c, err := engine.NewCachingStore(ctx, local, src, engine.CachingStoreConfig{MaxBytes: 3 * 30000})
	if err != nil {
		t.Fatal(err)
	}
	get := func(i int) {
		t.Helper()
		b, err := c.Get(ctx, ids[i], nil)
		if want, _ := chunkOf(i, 30000); err != nil || !bytes.Equal(b, want) {
			t.Fatalf("get chunk %d: %v", i, err)
		}
	}
	for i := range 3 {
		get(i)
	}
	get(0) // 1 is now the least recently used
	if n := src.gets.Load(); n != 3 {
		t.Fatalf("%d fetches for 3 distinct chunks and one repeat", n)
	}
	get(3) // evicts 1
	if ok, _ := local.Has(ctx, ids[1]); ok {
		t.Fatal("the least recently used chunk is still in the local store")
	}
	for _, i := range []int{0, 2, 3} {
		if ok, _ := local.Has(ctx, ids[i]); !ok {
			t.Fatalf("chunk %d was evicted instead", i)
		}
	}
	st := c.Stats()
	if st.Hits != 1 || st.Misses != 4 || st.Evicted != 1 || st.UsedBytes != 3*30000 || st.FetchedBytes != 4*30000 {
		t.Fatalf("stats %+v", st)
	}

	// A damaged fetch is refused and not cached.
	src.corrupt.Store(true)
	if _, err := c.Get(ctx, ids[4], nil); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("corrupt fetch: %v", err)
	}
	if ok, _ := local.Has(ctx, ids[4]); ok {
		t.Fatal("a corrupt chunk was cached")
	}
	src.corrupt.Store(false)

	// A pass-through read fetches and verifies but keeps nothing (and
	// evicts nothing).
	pb, err := c.Get(engine.WithoutCaching(ctx), ids[5], nil)
	if want, _ := chunkOf(5, 30000); err != nil || !bytes.Equal(pb, want) {
		t.Fatalf("pass-through get: %v", err)
	}
	if ok, _ := local.Has(ctx, ids[5]); ok {
		t.Fatal("a pass-through read was cached")
	}
	if st := c.Stats(); st.PassedThrough != 1 || st.Evicted != 1 || st.UsedBytes != 3*30000 {
		t.Fatalf("stats after a pass-through read: %+v", st)
	}
	src.corrupt.Store(true)
	if _, err := c.Get(engine.WithoutCaching(ctx), ids[5], nil); !errors.Is(err, engine.ErrCorrupt) {
		t.Fatalf("corrupt pass-through fetch: %v", err)
	}
	src.corrupt.Store(false)

	// Writes go through to the source, not into the cache.
	b, id := chunkOf(100, 3000)
	if err := c.Put(ctx, id, b); err != nil {
		t.Fatal(err)
	}
	if ok, _ := src.Has(ctx, id); !ok {
		t.Fatal("put did not reach the source")
	}
	if ok, _ := local.Has(ctx, id); ok {
		t.Fatal("put filled the cache")
	}

	// Reopened, the cache serves what it holds without fetching.
	if err := local.Close(); err != nil {
		t.Fatal(err)
	}
	local, err = pebblestore.Open(pebblestore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	c, err = engine.NewCachingStore(ctx, local, src, engine.CachingStoreConfig{MaxBytes: 3 * 30000})
	if err != nil {
		t.Fatal(err)
	}
	before := src.gets.Load()
	for _, i := range []int{0, 2, 3} {
		get(i)
	}
	if src.gets.Load() != before || c.Stats().UsedBytes != 3*30000 {
		t.Fatalf("reopened cache fetched %d chunks; stats %+v", src.gets.Load()-before, c.Stats())
	}
}

func TestCachingStoreUnderAnImageReader(t *testing.T) {
	ctx := context.Background()
	// A storage node holds the image...
	stored := &cacheTestChunks{m: map[engine.ChunkID][]byte{}}
	storage, err := engine.NewService(engine.ServiceConfig{NodeID: "storage"}, chunkstoretest.NewMemImages(), stored, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	data := sparseData(24<<20, 9)
	img := cacheTestUpload(t, storage, data)
	srcChunks := &countingSource{cacheTestChunks: stored}
	// ...and a mount host reads it through its cache.
	local, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer local.Close()
	cs, err := engine.NewCachingStore(ctx, local, srcChunks, engine.CachingStoreConfig{MaxBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	hostImages := chunkstoretest.NewMemImages()
	hostImages.Put(img)
	host, err := engine.NewService(engine.ServiceConfig{NodeID: "host"}, hostImages, cs, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := host.OpenRecord(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	if _, err := r.ReadAt(buf, 1<<20); err != nil || !bytes.Equal(buf, data[1<<20:2<<20]) {
		t.Fatalf("read through the caching store: %v", err)
	}
	st := cs.Stats()
	// The manifest plus the chunks of one MiB (and read-ahead), not the image.
	if st.FetchedBytes == 0 || st.FetchedBytes > 4<<20 {
		t.Fatalf("fetched %d bytes to read 1 MiB: %+v", st.FetchedBytes, st)
	}
}
