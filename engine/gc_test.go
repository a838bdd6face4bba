package engine_test

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
)

func TestGCSweepsGarbageKeepsLive(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	shared := randomData(1<<20, 1)
	a := append(append([]byte{}, shared...), randomData(1<<20, 2)...)
	b := append(append([]byte{}, shared...), randomData(1<<20, 3)...)
	imgB := e.upload(t, b)
	baseline := e.chunkCount(t)
	imgA := e.upload(t, a)
	if err := e.store.Put(ctx, engine.SumChunk([]byte("orphan")), []byte("orphan")); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Delete(ctx, imgA.ID); err != nil {
		t.Fatal(err)
	}
	st, err := e.gc.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.chunkCount(t); got != baseline {
		t.Fatalf("after GC the store holds %d chunks, want the %d of image B alone (stats %+v)", got, baseline, st)
	}
	if st.Swept == 0 || st.Images != 1 || st.ChunksAfter != baseline {
		t.Fatalf("stats %+v", st)
	}
	if !bytes.Equal(e.readAll(t, imgB.ID), b) {
		t.Fatal("image B changed after GC")
	}
	// A second collection finds nothing.
	if st, err := e.gc.Collect(ctx); err != nil || st.Swept != 0 {
		t.Fatalf("second GC: %+v, %v", st, err)
	}
}

func TestGCGracePeriodKeepsYoungGarbage(t *testing.T) {
	store := chunkstoretest.NewMemStore()
	e := newEnv(t, store)
	ctx := t.Context()
	now := time.Unix(1_800_000_000, 0)
	store.Now = func() time.Time { return now }
	orphan := []byte("young orphan")
	if err := store.Put(ctx, engine.SumChunk(orphan), orphan); err != nil {
		t.Fatal(err)
	}
	gc := engine.NewCollector(e.images, store, e.pins, engine.GCConfig{Grace: time.Hour,
		Now: func() time.Time { return now.Add(30 * time.Minute) }}, nil)
	st, err := gc.Collect(ctx)
	if err != nil || st.Swept != 0 || st.KeptYoung != 1 {
		t.Fatalf("GC within the grace period: %+v, %v", st, err)
	}
	gc = engine.NewCollector(e.images, store, e.pins, engine.GCConfig{Grace: time.Hour,
		Now: func() time.Time { return now.Add(2 * time.Hour) }}, nil)
	if st, err := gc.Collect(ctx); err != nil || st.Swept != 1 {
		t.Fatalf("GC after the grace period: %+v, %v", st, err)
	}
}

// gatedStore blocks the first Put until released, so a test can run a
// collection while an upload holds pins on chunks it found present (Put
// runs outside the pin lock; Has runs under it and must stay quick).
type gatedStore struct {
	engine.GCStore
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (g *gatedStore) Put(ctx context.Context, id engine.ChunkID, data []byte) error {
	g.once.Do(func() { close(g.reached); <-g.release })
	return g.GCStore.Put(ctx, id, data)
}

// An upload that finds orphan chunks present (dedup) while a collection
// runs must end with an image whose every chunk is stored: the pins keep
// the orphans.
func TestGCDuringUploadThatDedupsAnOrphan(t *testing.T) {
	ctx := t.Context()
	mem := chunkstoretest.NewMemStore()
	old := randomData(512<<10, 9)
	// Every chunk of old becomes an orphan: stored, its image deleted.
	pre := newEnv(t, mem)
	img := pre.upload(t, old)
	if err := pre.svc.Delete(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	data := append(append([]byte{}, old...), randomData(64<<10, 99)...)
	gs := &gatedStore{GCStore: mem, reached: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, gs)
	e.images = pre.images
	e.svc, e.gc = rebuild(t, e)

	done := make(chan *engine.Image, 1)
	errc := make(chan error, 1)
	go func() {
		img, err := e.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
		if err == nil {
			img, err = e.svc.Upload(ctx, img.ID, bytes.NewReader(data))
		}
		if err != nil {
			errc <- err
			return
		}
		done <- img
	}()
	<-gs.reached
	st, err := e.gc.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	close(gs.release)
	var up *engine.Image
	select {
	case up = <-done:
	case err := <-errc:
		t.Fatal(err)
	}
	if st.KeptPinned == 0 {
		t.Fatalf("GC during the upload kept nothing pinned: %+v", st)
	}
	if !bytes.Equal(e.readAll(t, up.ID), data) {
		t.Fatal("image uploaded during GC does not read back")
	}
	if _, err := e.gc.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(e.readAll(t, up.ID), data) {
		t.Fatal("image uploaded during GC does not read back after a second GC")
	}
}

// A collection that marks before an upload commits and sweeps after it
// released its pins must still keep the upload's chunks (retained pins).
func TestGCBetweenIngestAndCommit(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t, nil)
	data := randomData(512<<10, 10)
	var inGC atomic.Bool
	gcStarted, commitDone := make(chan struct{}), make(chan struct{})
	gs := &hookStore{GCStore: e.store}
	e.store = gs
	e.svc, e.gc = rebuild(t, e)
	// Hold the collection between mark and sweep (ListChunks) until the
	// upload has committed and released its pins.
	gs.beforeList = func() {
		if inGC.Load() {
			close(gcStarted)
			<-commitDone
		}
	}
	img, err := e.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	e.images.BeforeUpdate = func(next *engine.Image) {
		if next.Status == engine.StatusActive && !inGC.Load() {
			inGC.Store(true)
			go func() {
				if _, err := e.gc.Collect(ctx); err != nil {
					t.Error(err)
				}
			}()
			<-gcStarted
		}
	}
	if _, err := e.svc.Upload(ctx, img.ID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	close(commitDone)
	// Wait for the collection to finish, then check the image.
	deadline := time.Now().Add(10 * time.Second)
	for e.gc.Last().StartedAt.IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("collection did not finish")
		}
		time.Sleep(time.Millisecond)
	}
	if st := e.gc.Last(); st.Swept != 0 {
		t.Fatalf("collection swept %d chunks of an upload committed while it ran", st.Swept)
	}
	if !bytes.Equal(e.readAll(t, img.ID), data) {
		t.Fatal("image does not read back")
	}
}

type hookStore struct {
	engine.GCStore
	beforeList func()
}

func (h *hookStore) ListChunks(ctx context.Context) iter.Seq2[engine.ChunkInfo, error] {
	if h.beforeList != nil {
		h.beforeList()
	}
	return h.GCStore.ListChunks(ctx)
}

func rebuild(t *testing.T, e *env) (*engine.Service, *engine.Collector) {
	t.Helper()
	svc, err := engine.NewService(e.svc.Config(), e.images, e.store, e.pins, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc, engine.NewCollector(e.images, e.store, e.pins, engine.GCConfig{}, nil)
}

// Uploads, deletes and collections racing: every active image reads back
// in full at the end, and a final collection leaves exactly the chunks of
// the active images.
func TestGCStress(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t, nil)
	base := randomData(2<<20, 20)
	var wg sync.WaitGroup
	var mu sync.Mutex
	want := map[string][]byte{}
	stop := make(chan struct{})
	errs := make(chan error, 16)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := e.gc.Collect(ctx); err != nil {
				errs <- err
				return
			}
		}
	}()
	var up sync.WaitGroup
	for w := range 3 {
		up.Add(1)
		go func() {
			defer up.Done()
			for i := range 6 {
				data := append([]byte{}, base...)
				copy(data[(w*6+i)*64<<10:], randomData(100<<10, uint64(100+w*6+i)))
				img, err := e.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
				if err == nil {
					img, err = e.svc.Upload(ctx, img.ID, bytes.NewReader(data))
				}
				if err != nil {
					errs <- err
					return
				}
				if i%2 == 1 {
					if err := e.svc.Delete(ctx, img.ID); err != nil {
						errs <- err
						return
					}
					continue
				}
				mu.Lock()
				want[img.ID] = data
				mu.Unlock()
			}
		}()
	}
	up.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	}
	for id, data := range want {
		if !bytes.Equal(e.readAll(t, id), data) {
			t.Fatalf("image %s does not read back after racing GCs", id)
		}
	}
	if _, err := e.gc.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	live := map[engine.ChunkID]bool{}
	for id := range want {
		img, _ := e.svc.Get(ctx, id)
		m, err := e.svc.Manifest(ctx, img.ManifestRoot)
		if err != nil {
			t.Fatal(err)
		}
		blobs, _ := engine.ManifestBlobIDs(ctx, e.store, img.ManifestRoot)
		for _, b := range blobs {
			live[b] = true
		}
		for _, c := range m.Chunks {
			if !c.ID.IsZero() {
				live[c.ID] = true
			}
		}
	}
	if got := e.chunkCount(t); got != len(live) {
		t.Fatalf("store holds %d chunks after the final GC, live images use %d", got, len(live))
	}
}

// Data staged for a glance-direct import (only the record's Staged root
// names it) is live: a collection must keep it.
func TestGCKeepsStagedData(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t, nil)
	data := randomData(512<<10, 70)
	g, err := engine.NewIngester(e.store, e.pins, e.svc.Config().Ingest)
	if err != nil {
		t.Fatal(err)
	}
	res, err := g.Ingest(ctx, bytes.NewReader(data), engine.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img, err := e.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	img.Staged = &engine.StagedData{Root: res.Root, Size: res.Size}
	if _, err := e.images.UpdateImage(ctx, img, img.Revision); err != nil {
		t.Fatal(err)
	}
	before := e.chunkCount(t)
	st, err := e.gc.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Swept != 0 || e.chunkCount(t) != before {
		t.Fatalf("GC swept %d chunks of staged data", st.Swept)
	}
	m, err := engine.LoadManifest(ctx, e.store, res.Root)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := engine.NewImageReader(m, e.store, engine.NewChunkCache(1<<20), engine.ReaderConfig{}).WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("staged data unreadable after GC: %v", err)
	}
}
