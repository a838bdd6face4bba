package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/fusefs"
	"golang.org/x/sys/unix"
)

// node is a storage node's engine over a Pebble store, with its FUSE mount.
type node struct {
	chunks *pebblestore.Store
	svc    *engine.Service
	srv    *fusefs.Server
	data   string // Pebble directory
	mnt    string
}

// images is a shared image store so that a node can be reopened (a fresh
// chunk cache and Pebble block cache: "cold") over the same data.
type images struct {
	mu sync.Mutex
	m  map[string]*engine.Image
}

func (s *images) GetImage(ctx context.Context, id string) (*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.m[id]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", id, engine.ErrNotFound)
	}
	return img.Clone(), nil
}

func (s *images) ListImages(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error) {
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

func (s *images) CreateImage(ctx context.Context, img *engine.Image) (*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := img.Clone()
	c.Revision = 1
	s.m[c.ID] = c
	return c.Clone(), nil
}

func (s *images) UpdateImage(ctx context.Context, img *engine.Image, ifRevision uint64) (*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.m[img.ID]; !ok || cur.Revision != ifRevision {
		return nil, engine.ErrConflict
	}
	c := img.Clone()
	c.Revision = ifRevision + 1
	s.m[c.ID] = c
	return c.Clone(), nil
}

func (s *images) DeleteImage(ctx context.Context, id string, ifRevision uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
	return nil
}

func openNode(b *testing.B, dir string, imgs *images, mount bool) *node {
	b.Helper()
	n := &node{data: filepath.Join(dir, "chunks"), mnt: filepath.Join(dir, "mnt")}
	var err error
	n.chunks, err = pebblestore.Open(pebblestore.Config{Dir: n.data})
	if err != nil {
		b.Fatal(err)
	}
	n.svc, err = engine.NewService(engine.ServiceConfig{NodeID: "bench"}, imgs, n.chunks, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.close(b) })
	if mount {
		n.srv, err = fusefs.Mount(n.mnt, n.svc, fusefs.Options{})
		if err != nil {
			b.Fatal(err)
		}
	}
	return n
}

// close unmounts and closes the store; it may be called more than once.
func (n *node) close(b *testing.B) {
	b.Helper()
	if n.srv != nil {
		if err := n.srv.Unmount(); err != nil {
			b.Error(err)
		}
		n.srv = nil
	}
	if n.chunks != nil {
		if err := n.chunks.Close(); err != nil {
			b.Error(err)
		}
		n.chunks = nil
	}
}

// dropCache evicts the page cache of every file under the paths, the way
// `echo 1 > drop_caches` would for them, without disturbing other users
// of this shared machine.
func dropCache(b *testing.B, paths ...string) {
	b.Helper()
	for _, root := range paths {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil || d.IsDir() {
				return err
			}
			f, err := os.Open(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // Pebble compacted it away meanwhile
			}
			if err != nil {
				return err
			}
			defer f.Close()
			return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
		})
		if err != nil {
			b.Fatalf("drop cache of %s: %v", root, err)
		}
	}
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	out := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			out[i+j] = byte(v >> (8 * j))
		}
	}
	return out
}

func upload(b *testing.B, svc *engine.Service, name string, r io.Reader) *engine.Image {
	b.Helper()
	ctx := context.Background()
	img, err := svc.Create(ctx, &engine.Image{Name: &name, DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		b.Fatal(err)
	}
	img, err = svc.Upload(ctx, img.ID, r)
	if err != nil {
		b.Fatal(err)
	}
	return img
}

// seqRead reads the file start to end in 1 MiB reads and returns GB/s.
func seqRead(b *testing.B, p string, want int64) float64 {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	start := time.Now()
	var n int64
	for {
		k, err := f.Read(buf)
		n += int64(k)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	el := time.Since(start)
	if n != want {
		b.Fatalf("read %d bytes of %s, want %d", n, p, want)
	}
	return float64(n) / el.Seconds() / 1e9
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// seqFixture is 1 GiB uploaded to a node and written to a plain file on
// the same disk.
type seqFixture struct {
	dir, ext4 string
	imgs      *images
	img       *engine.Image
	size      int64
}

func newSeqFixture(b *testing.B, size int) *seqFixture {
	b.Helper()
	fx := &seqFixture{dir: b.TempDir(), imgs: &images{m: map[string]*engine.Image{}}, size: int64(size)}
	data := randomData(size, 1)
	n := openNode(b, fx.dir, fx.imgs, false)
	fx.img = upload(b, n.svc, "seq", bytes.NewReader(data))
	n.close(b)
	fx.ext4 = filepath.Join(fx.dir, "image.raw")
	if err := os.WriteFile(fx.ext4, data, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := syncFile(fx.ext4); err != nil {
		b.Fatal(err)
	}
	return fx
}

func syncFile(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// BenchmarkMountSequentialRead reads 1 GiB through the mount with the
// chunks local: cold (a freshly opened node, the page cache of its Pebble
// files and of the mounted file dropped) and warm (again, right away, from
// the page cache), each against the same bytes in a file on ext4.
func BenchmarkMountSequentialRead(b *testing.B) {
	fx := newSeqFixture(b, 1<<30)
	var coldM, coldE, warmM, warmE []float64
	b.ResetTimer()
	for range max(b.N, 3) {
		n := openNode(b, fx.dir, fx.imgs, true)
		p := filepath.Join(n.mnt, "images", fx.img.ID)
		dropCache(b, n.data, p, fx.ext4)
		coldM = append(coldM, seqRead(b, p, fx.size))
		warmM = append(warmM, seqRead(b, p, fx.size))
		n.close(b)
		coldE = append(coldE, seqRead(b, fx.ext4, fx.size))
		warmE = append(warmE, seqRead(b, fx.ext4, fx.size))
	}
	b.StopTimer()
	b.ReportMetric(median(coldM), "cold-mount-GB/s")
	b.ReportMetric(median(coldE), "cold-ext4-GB/s")
	b.ReportMetric(median(warmM), "warm-mount-GB/s")
	b.ReportMetric(median(warmE), "warm-ext4-GB/s")
	b.ReportMetric(median(warmM)/median(warmE), "warm-ratio")
	b.Logf("cold mount %v ext4 %v; warm mount %v ext4 %v (GB/s)", coldM, coldE, warmM, warmE)
}

// BenchmarkMountRandom4KDirect measures random 4 KiB O_DIRECT reads over
// 1 GiB through the mount: every read is a FUSE round trip. Warm: the
// chunks are in the engine's decoded-chunk cache (a 128 MiB range, inside
// the cache); cold: a fresh node, random offsets over the whole GiB.
func BenchmarkMountRandom4KDirect(b *testing.B) {
	fx := newSeqFixture(b, 1<<30)
	b.ResetTimer()
	var warm, cold, ext4 []time.Duration
	for range b.N {
		n := openNode(b, fx.dir, fx.imgs, true)
		p := filepath.Join(n.mnt, "images", fx.img.ID)
		dropCache(b, n.data, fx.ext4)
		cold = append(cold, randomDirect(b, p, fx.size, 5000, 1)...)
		// Fill the decoded-chunk cache for the first 128 MiB.
		seqReadRange(b, p, 128<<20)
		warm = append(warm, randomDirect(b, p, 128<<20, 20000, 2)...)
		n.close(b)
		ext4 = append(ext4, randomDirect(b, fx.ext4, fx.size, 5000, 3)...)
	}
	b.StopTimer()
	pct := func(d []time.Duration, q float64) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(s[int(float64(len(s)-1)*q)].Microseconds())
	}
	b.ReportMetric(pct(warm, 0.5), "warm-p50-µs")
	b.ReportMetric(pct(warm, 0.99), "warm-p99-µs")
	b.ReportMetric(pct(cold, 0.5), "cold-p50-µs")
	b.ReportMetric(pct(cold, 0.99), "cold-p99-µs")
	b.ReportMetric(pct(ext4, 0.5), "ext4-p50-µs")
}

func seqReadRange(b *testing.B, p string, n int64) {
	b.Helper()
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.CopyN(io.Discard, f, n); err != nil {
		b.Fatal(err)
	}
}

// randomDirect times n random 4 KiB O_DIRECT reads in [0, span).
func randomDirect(b *testing.B, p string, span int64, n int, seed uint64) []time.Duration {
	b.Helper()
	fd, err := syscall.Open(p, syscall.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer syscall.Close(fd)
	raw := make([]byte, 8192)
	a := int(uintptr(unsafe.Pointer(&raw[0])) & 4095)
	buf := raw[(4096-a)%4096:][:4096]
	r := rand.New(rand.NewPCG(seed, 5))
	out := make([]time.Duration, 0, n)
	for range n {
		off := r.Int64N(span/4096) * 4096
		t0 := time.Now()
		k, err := syscall.Pread(fd, buf, off)
		d := time.Since(t0)
		if err != nil || k != 4096 {
			b.Fatalf("pread %s at %d: %d, %v", p, off, k, err)
		}
		out = append(out, d)
	}
	return out
}
