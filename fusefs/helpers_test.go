package fusefs_test

import (
	"bytes"
	"context"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
)

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
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: "test", ChunkCacheBytes: cacheBytes}, chunkstoretest.NewMemImages(), chunks, nil, nil)
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
