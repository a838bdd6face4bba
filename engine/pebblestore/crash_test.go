package pebblestore_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
)

// committed is an ingest that returned: from then on a record may point at
// its root, so every later crash must preserve it.
type committed struct {
	root engine.ChunkID
	data []byte
}

type crashPoint struct {
	fs   *vfs.MemFS
	live []committed
	desc string
}

// crashingStore takes a crash clone of the file system every few writes
// and around every Sync, recording which ingests had returned by then.
type crashingStore struct {
	*pebblestore.Store
	fs     *vfs.MemFS
	rng    *rand.Rand
	mu     sync.Mutex
	puts   atomic.Int64
	done   *[]committed
	points []crashPoint
}

func (c *crashingStore) clone(desc string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	live := append([]committed(nil), (*c.done)...) // read before cloning: anything committed is older than the clone
	pct := []int{0, 0, 50, 100}[len(c.points)%4]
	fs := c.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: pct, RNG: c.rng})
	c.points = append(c.points, crashPoint{fs: fs, live: live, desc: fmt.Sprintf("%s, %d%% of unsynced data kept", desc, pct)})
}

func (c *crashingStore) Put(ctx context.Context, id engine.ChunkID, data []byte) error {
	err := c.Store.Put(ctx, id, data)
	if n := c.puts.Add(1); n%9 == 0 {
		c.clone(fmt.Sprintf("after put %d", n))
	}
	return err
}

func (c *crashingStore) Sync(ctx context.Context) error {
	c.clone("before a sync")
	err := c.Store.Sync(ctx)
	c.clone("after a sync")
	return err
}

type noImages struct{}

func (noImages) GetImage(context.Context, string) (*engine.Image, error) {
	return nil, engine.ErrNotFound
}
func (noImages) ListImages(context.Context, func(*engine.Image) bool) ([]*engine.Image, error) {
	return nil, nil
}
func (noImages) CreateImage(context.Context, *engine.Image) (*engine.Image, error) {
	return nil, engine.ErrInvalid
}
func (noImages) UpdateImage(context.Context, *engine.Image, uint64) (*engine.Image, error) {
	return nil, engine.ErrInvalid
}
func (noImages) DeleteImage(context.Context, string, uint64) error { return engine.ErrInvalid }

type roots []engine.ChunkID

func (r roots) LiveRoots(context.Context) ([]engine.ChunkID, error) { return r, nil }

// TestCrashDuringIngest crashes (in a crashable in-memory file system) at
// many points of several concurrent ingests that share content, and checks
// after each crash that every ingest that had returned reads back in full,
// and that GC then reclaims everything else.
func TestCrashDuringIngest(t *testing.T) {
	ctx := t.Context()
	memfs := vfs.NewCrashableMem()
	s := openStore(t, pebblestore.Config{FS: memfs, Dir: "/chunks", MemTableSize: 2 << 20})
	var done []committed
	cs := &crashingStore{Store: s, fs: memfs, rng: rand.New(rand.NewPCG(1, 2)), done: &done}
	cfg := engine.DefaultIngestConfig()
	cfg.Chunking.Min, cfg.Chunking.Avg, cfg.Chunking.Max = 4<<10, 16<<10, 64<<10
	cfg.BlockSize = 256 << 10
	g, err := engine.NewIngester(cs, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := randomBytes(2<<20, 40)
	var wg sync.WaitGroup
	var mu sync.Mutex
	errs := make(chan error, 8)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 3 {
				data := append([]byte{}, base...)
				copy(data[(w*3+i)*200<<10:], randomBytes(150<<10, uint64(50+w*3+i)))
				clear(data[len(data)-(256<<10):]) // a zero run
				res, err := g.Ingest(ctx, bytes.NewReader(data), engine.IngestOptions{})
				if err != nil {
					errs <- err
					return
				}
				cs.mu.Lock()
				mu.Lock()
				done = append(done, committed{root: res.Root, data: data})
				mu.Unlock()
				cs.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(cs.points) < 20 {
		t.Fatalf("only %d crash points", len(cs.points))
	}
	checked := 0
	for i, p := range cs.points {
		if i%4 != 0 && i != len(cs.points)-1 { // every fourth point keeps the test short
			continue
		}
		checked++
		func() {
			r, err := pebblestore.Open(pebblestore.Config{FS: p.fs, Dir: "/chunks"})
			if err != nil {
				t.Fatalf("crash point %d (%s): reopen: %v", i, p.desc, err)
			}
			defer r.Close()
			var live roots
			for _, c := range p.live {
				m, err := engine.LoadManifest(ctx, r, c.root)
				if err != nil {
					t.Fatalf("crash point %d (%s): committed manifest %s lost: %v", i, p.desc, c.root, err)
				}
				var buf bytes.Buffer
				if _, err := engine.NewImageReader(m, r, engine.NewChunkCache(1<<20), engine.ReaderConfig{}).WriteTo(&buf); err != nil {
					t.Fatalf("crash point %d (%s): committed image unreadable: %v", i, p.desc, err)
				}
				if !bytes.Equal(buf.Bytes(), c.data) {
					t.Fatalf("crash point %d (%s): committed image reads back different bytes", i, p.desc)
				}
				live = append(live, c.root)
			}
			// GC reclaims every chunk the committed images do not use.
			gc := engine.NewCollector(noImages{}, r, engine.NewPins(), engine.GCConfig{}, nil, live)
			st, err := gc.Collect(ctx)
			if err != nil {
				t.Fatalf("crash point %d: gc: %v", i, err)
			}
			n := 0
			for _, err := range r.ListChunks(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				n++
			}
			if n != st.Marked {
				t.Fatalf("crash point %d (%s): %d chunks after GC, %d live", i, p.desc, n, st.Marked)
			}
		}()
	}
	t.Logf("%d crash points taken, %d checked", len(cs.points), checked)
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 3))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
