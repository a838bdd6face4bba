package pebblestore_test

import (
	"bytes"
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
)

func openStore(t testing.TB, cfg pebblestore.Config) *pebblestore.Store {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	s, err := pebblestore.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	chunkstoretest.Run(t, func(t *testing.T) engine.GCStore { return openStore(t, pebblestore.Config{}) })
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // Pebble removed it meanwhile
		}
		if err != nil {
			return err
		}
		if !d.IsDir() {
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestGCGivesDiskSpaceBack checks that sweeping an image's chunks shrinks
// the store's directory, not just its key count.
func TestGCGivesDiskSpaceBack(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s := openStore(t, pebblestore.Config{Dir: dir, MemTableSize: 4 << 20})
	g, err := engine.NewIngester(s, nil, engine.DefaultIngestConfig())
	if err != nil {
		t.Fatal(err)
	}
	keep, err := g.Ingest(ctx, bytes.NewReader(randomBytes(6<<20, 60)), engine.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Ingest(ctx, bytes.NewReader(randomBytes(18<<20, 61)), engine.IngestOptions{}); err != nil {
		t.Fatal(err)
	}
	before := dirSize(t, dir)
	gc := engine.NewCollector(noImages{}, s, engine.NewPins(), engine.GCConfig{}, nil, roots{keep.Root})
	st, err := gc.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Pebble deletes obsolete files in the background: poll.
	after := dirSize(t, dir)
	for deadline := time.Now().Add(20 * time.Second); before-after < st.SweptBytes*8/10; after = dirSize(t, dir) {
		if time.Now().After(deadline) {
			t.Fatalf("GC swept %d bytes of chunks but the directory shrank by %d\n%s", st.SweptBytes, before-after, s.DB().Metrics())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("swept %d chunks (%d bytes): directory %d -> %d bytes", st.Swept, st.SweptBytes, before, after)
	var buf bytes.Buffer
	m, err := engine.LoadManifest(ctx, s, keep.Root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.NewImageReader(m, s, engine.NewChunkCache(1<<20), engine.ReaderConfig{}).WriteTo(&buf); err != nil {
		t.Fatalf("kept image unreadable after GC: %v", err)
	}
}
