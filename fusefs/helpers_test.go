package fusefs_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
)

// memImages is an in-memory engine.ImageStore with the same
// compare-and-set contract as raftmeta.
type memImages struct {
	mu     sync.Mutex
	images map[string]*engine.Image
}

func (m *memImages) GetImage(ctx context.Context, id string) (*engine.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	img, ok := m.images[id]
	if !ok {
		return nil, fmt.Errorf("memimages: get %s: %w", id, engine.ErrNotFound)
	}
	return img.Clone(), nil
}

func (m *memImages) ListImages(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*engine.Image
	for _, img := range m.images {
		if match == nil || match(img) {
			out = append(out, img.Clone())
		}
	}
	return out, nil
}

func (m *memImages) CreateImage(ctx context.Context, img *engine.Image) (*engine.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.images[img.ID]; ok {
		return nil, engine.ErrExists
	}
	c := img.Clone()
	c.Revision = 1
	m.images[c.ID] = c
	return c.Clone(), nil
}

func (m *memImages) UpdateImage(ctx context.Context, img *engine.Image, ifRevision uint64) (*engine.Image, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.images[img.ID]
	if !ok {
		return nil, engine.ErrNotFound
	}
	if cur.Revision != ifRevision {
		return nil, engine.ErrConflict
	}
	c := img.Clone()
	c.Revision = ifRevision + 1
	m.images[c.ID] = c
	return c.Clone(), nil
}

func (m *memImages) DeleteImage(ctx context.Context, id string, ifRevision uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur, ok := m.images[id]
	if !ok {
		return engine.ErrNotFound
	}
	if cur.Revision != ifRevision {
		return engine.ErrConflict
	}
	delete(m.images, id)
	return nil
}

// newService returns a real engine over Pebble in a temp dir.
func newService(t testing.TB) *engine.Service {
	t.Helper()
	return newServiceWithCache(t, 0)
}

// newServiceWithCache is newService with a chunk cache of cacheBytes (0:
// the default).
func newServiceWithCache(t testing.TB, cacheBytes int64) *engine.Service {
	t.Helper()
	chunks, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chunks.Close() })
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: "test", ChunkCacheBytes: cacheBytes}, &memImages{images: map[string]*engine.Image{}}, chunks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// upload creates an active raw image with the given content.
func upload(t testing.TB, svc *engine.Service, name string, data []byte) *engine.Image {
	t.Helper()
	ctx := context.Background()
	img, err := svc.Create(ctx, &engine.Image{Name: &name, DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	img, err = svc.Upload(ctx, img.ID, bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	b := make([]byte, n)
	_, _ = rand.NewChaCha8(key).Read(b)
	return b
}

// sparse returns n bytes that are mostly zero with random islands of
// random sizes, so the manifest holds zero runs between data chunks.
func sparse(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	b := make([]byte, n)
	for off := r.IntN(1 << 20); off < n; off += 512<<10 + r.IntN(4<<20) {
		l := min(n-off, 1+r.IntN(1<<20))
		copy(b[off:], randomBytes(l, r.Uint64()))
	}
	return b
}

// zeroHeavy returns n bytes of zeros with single non-zero bytes sprinkled
// at random (each defeats a zero run without being a real island).
func zeroHeavy(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for range n / (256 << 10) {
		b[r.IntN(n)] = byte(1 + r.IntN(255))
	}
	return b
}

func mustReadFile(t testing.TB, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
