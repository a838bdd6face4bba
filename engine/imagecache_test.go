package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// cacheTestChunks is an in-memory ChunkStore that verifies like a real one.
type cacheTestChunks struct {
	mu sync.Mutex
	m  map[engine.ChunkID][]byte
}

func (s *cacheTestChunks) Get(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	s.mu.Lock()
	b, ok := s.m[id]
	s.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("get %s: %w", id, engine.ErrNotFound)
	}
	if engine.SumChunk(b) != id {
		return nil, &engine.CorruptError{ID: id, Got: engine.SumChunk(b)}
	}
	return append(buf[:0], b...), nil
}

func (s *cacheTestChunks) Put(ctx context.Context, id engine.ChunkID, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[id] = bytes.Clone(data)
	return nil
}

func (s *cacheTestChunks) Has(ctx context.Context, id engine.ChunkID) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	return ok, nil
}

func (s *cacheTestChunks) Sync(ctx context.Context) error { return nil }

func newCacheTestService(t *testing.T) *engine.Service {
	t.Helper()
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: "t"},
		chunkstoretest.NewMemImages(), &cacheTestChunks{m: map[engine.ChunkID][]byte{}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func cacheTestUpload(t *testing.T, svc *engine.Service, data []byte) *engine.Image {
	t.Helper()
	ctx := context.Background()
	img, err := svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	if img, err = svc.Upload(ctx, img.ID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return img
}

// sparseData is mostly zero with random islands.
func sparseData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for off := 1 << 20; off < n; off += 3 << 20 {
		for i := off; i < min(n, off+512<<10); i++ {
			b[i] = byte(r.Uint32())
		}
	}
	return b
}

func openTestCache(t *testing.T, svc *engine.Service, cfg engine.ImageCacheConfig) *engine.ImageCache {
	t.Helper()
	c, err := engine.OpenImageCache(cfg, svc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitCached(t *testing.T, c *engine.ImageCache, id string) engine.CachedImage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		st, err := c.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range st.Cached {
			if e.ImageID == id && !slices.Contains(st.Queued, id) {
				return e
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("image %s not cached within 10 s", id)
	return engine.CachedImage{}
}

func TestImageCachePrefetchWritesASparseCopy(t *testing.T) {
	svc := newCacheTestService(t)
	data := sparseData(16<<20, 1)
	img := cacheTestUpload(t, svc, data)
	dir := t.TempDir()
	c := openTestCache(t, svc, engine.ImageCacheConfig{Dir: dir})
	if err := c.Queue(context.Background(), img.ID); err != nil {
		t.Fatal(err)
	}
	e := waitCached(t, c, img.ID)
	if e.Size != int64(len(data)) || e.Root != img.ManifestRoot || e.Hits != 0 {
		t.Fatalf("cached entry %+v", e)
	}
	f, ok := c.OpenCopy(context.Background(), img)
	if !ok {
		t.Fatal("no copy for a cached image")
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("copy differs from the image (%v)", err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 > int64(len(data))/2 {
		t.Fatalf("copy allocates %d bytes of %d: zero runs were written", st.Blocks*512, len(data))
	}
	if st, _ := c.State(context.Background()); st.Cached[0].Hits != 1 {
		t.Fatalf("hits after one open: %+v", st.Cached[0])
	}
	// A record with another manifest (or size) gets no copy.
	other := img.Clone()
	other.ManifestRoot = engine.SumChunk([]byte("other"))
	if _, ok := c.OpenCopy(context.Background(), other); ok {
		t.Fatal("copy served for a different manifest")
	}
	// Queueing again changes nothing.
	if err := c.Queue(context.Background(), img.ID); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.State(context.Background()); len(st.Queued) != 0 || len(st.Cached) != 1 {
		t.Fatalf("state after re-queue: %+v", st)
	}
}

func TestImageCacheGlanceAnswers(t *testing.T) {
	svc := newCacheTestService(t)
	img := cacheTestUpload(t, svc, []byte("content"))
	// Owned by the member's project: the policy, not visibility (an image
	// the caller cannot see is 404, as in Glance), is what refuses it.
	if _, err := svc.Update(context.Background(), img.ID, func(i *engine.Image) error { i.Owner = "p"; return nil }); err != nil {
		t.Fatal(err)
	}
	c := openTestCache(t, svc, engine.ImageCacheConfig{Dir: t.TempDir()})
	noauth := engine.WithCaller(context.Background(), engine.NoAuthCaller())
	member := engine.WithCaller(context.Background(), &engine.Caller{ProjectID: "p", Roles: []string{"member", "reader"}})
	admin := engine.WithCaller(context.Background(), &engine.Caller{ProjectID: "p", Roles: []string{"admin"}, IsAdmin: true})

	forbidden := func(what string, err error, action string) {
		t.Helper()
		msg, _ := engine.UserMessage(err)
		if !errors.Is(err, engine.ErrForbidden) || msg != "You are not authorized to complete "+action+" action." {
			t.Fatalf("%s: %v, want 403 for %s", what, err, action)
		}
	}
	for _, ctx := range []context.Context{noauth, member} {
		_, err := c.State(ctx)
		forbidden("list", err, "cache_list")
		forbidden("queue", c.Queue(ctx, img.ID), "cache_image")
		forbidden("delete", c.Delete(ctx, img.ID), "cache_delete")
		_, _, err = c.Clear(ctx, engine.ClearAll)
		forbidden("clear", err, "cache_delete")
	}
	// Glance looks the image up before the policy: unknown images are 404.
	err := c.Queue(noauth, "00000000-0000-0000-0000-000000000000")
	if msg, _ := engine.UserMessage(err); !errors.Is(err, engine.ErrNotFound) || msg != "Image 00000000-0000-0000-0000-000000000000 not found." {
		t.Fatalf("queue unknown: %v", err)
	}
	if err := c.Delete(admin, "00000000-0000-0000-0000-000000000000"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("delete unknown: %v", err)
	}
	queued, err := svc.Create(context.Background(), &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Queue(admin, queued.ID)
	if msg, _ := engine.UserMessage(err); !errors.Is(err, engine.ErrInvalid) || msg != "Only images with status active can be targeted for queueing" {
		t.Fatalf("queue a queued image: %v", err)
	}
	if _, _, err := c.Clear(admin, "everything"); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("bad clear target: %v", err)
	}
	if err := c.Queue(admin, img.ID); err != nil {
		t.Fatal(err)
	}
	waitCached(t, c, img.ID)
	if err := c.Delete(admin, img.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := c.State(admin); err != nil || len(st.Cached)+len(st.Queued) != 0 {
		t.Fatalf("after delete: %+v, %v", st, err)
	}
	// Deleting an image that is neither cached nor queued is fine (204).
	if err := c.Delete(admin, img.ID); err != nil {
		t.Fatalf("delete an uncached image: %v", err)
	}
}

func TestImageCacheClearPruneSweepAndRestart(t *testing.T) {
	svc := newCacheTestService(t)
	ctx := context.Background()
	var imgs []*engine.Image
	for i := range 3 {
		imgs = append(imgs, cacheTestUpload(t, svc, sparseData(4<<20, uint64(10+i))))
	}
	dir := t.TempDir()
	now := time.Unix(1700000000, 0)
	var clockMu sync.Mutex
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); now = now.Add(time.Second); return now }
	// Room for two 4 MiB copies: the third evicts the least recently used.
	c, err := engine.OpenImageCache(engine.ImageCacheConfig{Dir: dir, MaxBytes: 9 << 20, Now: clock, SweepInterval: 20 * time.Millisecond}, svc)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range imgs[:2] {
		if err := c.Queue(ctx, img.ID); err != nil {
			t.Fatal(err)
		}
		waitCached(t, c, img.ID)
	}
	f, ok := c.OpenCopy(ctx, imgs[0]) // imgs[1] is now the least recently used
	if !ok {
		t.Fatal("no copy")
	}
	f.Close()
	if err := c.Queue(ctx, imgs[2].ID); err != nil {
		t.Fatal(err)
	}
	waitCached(t, c, imgs[2].ID)
	st, _ := c.State(ctx)
	var ids []string
	for _, e := range st.Cached {
		ids = append(ids, e.ImageID)
	}
	if slices.Contains(ids, imgs[1].ID) || len(ids) != 2 {
		t.Fatalf("after pruning the cache holds %v; want all but %s", ids, imgs[1].ID)
	}
	// A deleted image's copy is swept.
	if err := svc.Delete(ctx, imgs[2].ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := c.State(ctx)
		if len(st.Cached) == 1 && st.Cached[0].ImageID == imgs[0].ID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted image's copy was not swept: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(dir, imgs[2].ID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("swept copy still on disk: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: the complete copy survives, a partial one and a stray data
	// file without a record do not, and the queue resumes.
	os.WriteFile(filepath.Join(dir, "incomplete", imgs[1].ID), []byte("partial"), 0o640)
	os.WriteFile(filepath.Join(dir, "stray"), []byte("no record"), 0o640)
	os.WriteFile(filepath.Join(dir, "queue", imgs[1].ID), nil, 0o640)
	c = openTestCache(t, svc, engine.ImageCacheConfig{Dir: dir})
	waitCached(t, c, imgs[1].ID)
	st, _ = c.State(ctx)
	if len(st.Cached) != 2 {
		t.Fatalf("after restart: %+v", st)
	}
	for _, p := range []string{filepath.Join(dir, "incomplete", imgs[1].ID), filepath.Join(dir, "stray")} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s survived the restart", p)
		}
	}
	n, q, err := c.Clear(ctx, engine.ClearCache)
	if err != nil || n != 2 || q != 0 {
		t.Fatalf("clear cache: %d %d %v", n, q, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 { // incomplete/ and queue/
		t.Fatalf("cache dir after clear: %v", ents)
	}
}

func TestSlicesEqualReadAt(t *testing.T) {
	svc := newCacheTestService(t)
	data := sparseData(12<<20, 5)
	copy(data[:3<<20], sparseData(3<<20, 6)[1<<20:])
	img := cacheTestUpload(t, svc, data)
	ctx := context.Background()
	r, err := svc.OpenRecord(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 150 {
		off := rng.Int64N(int64(len(data)) + 1)
		n := rng.IntN(3 << 19)
		vecs, got, err := r.Slices(ctx, off, n, nil)
		end := min(off+int64(n), int64(len(data)))
		if got != int(end-off) || (got < n) != errors.Is(err, io.EOF) || (err != nil && !errors.Is(err, io.EOF)) {
			t.Fatalf("Slices(%d, %d) = %d, %v", off, n, got, err)
		}
		if joined := bytes.Join(vecs, nil); !bytes.Equal(joined, data[off:end]) {
			t.Fatalf("Slices(%d, %d) differs from the data", off, n)
		}
	}
	if _, _, err := r.Slices(ctx, -1, 10, nil); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("negative offset: %v", err)
	}
}

// TestImageCacheInUseAfterClose: a node shutting down with images open
// (its engine about to close) queues nothing when their delay runs out;
// before Close, the same delay queues the image.
func TestImageCacheInUseAfterClose(t *testing.T) {
	svc := newCacheTestService(t)
	img := cacheTestUpload(t, svc, sparseData(4<<20, 9))
	dir := t.TempDir()
	c := openTestCache(t, svc, engine.ImageCacheConfig{Dir: dir, CacheInUseAfter: 50 * time.Millisecond})
	closed := c.InUse(img)
	defer closed()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a negative check: well past the delay
	if marks, _ := os.ReadDir(filepath.Join(dir, "queue")); len(marks) != 0 {
		t.Fatalf("an image was queued after Close: %d queue markers", len(marks))
	}
	c = openTestCache(t, svc, engine.ImageCacheConfig{Dir: dir, CacheInUseAfter: 50 * time.Millisecond})
	defer c.InUse(img)()
	waitCached(t, c, img.ID)
}
