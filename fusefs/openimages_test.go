package fusefs_test

import (
	"bytes"
	"context"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/fusefs"
)

// TestDeletedWhileOpenKeepsItsChunks: a VM has an image open on the mount
// when the image is deleted and garbage is collected. The collector, fed
// the tree's open images, keeps the chunks; the open file reads every
// byte; after the last close the next collection sweeps them.
func TestDeletedWhileOpenKeepsItsChunks(t *testing.T) {
	ctx := context.Background()
	chunks, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chunks.Close() })
	meta := chunkstoretest.NewMemImages()
	pins := engine.NewPins()
	// No decoded-chunk cache to speak of: reads after the collection must
	// reach the store.
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: "test", ChunkCacheBytes: 1}, meta, chunks, pins, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := fusefs.NewOpenImages()
	gc := engine.NewCollector(meta, chunks, pins, engine.GCConfig{}, nil, open)

	data := randomBytes(6<<20, 21)
	img := upload(t, svc, "doomed", data)
	mnt := mountTree(t, svc, fusefs.Options{OpenImages: open})
	f, err := os.Open(filepath.Join(mnt, "images", img.ID))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n := open.Open(); n != 1 {
		t.Fatalf("open files counted: %d, want 1", n)
	}
	head := make([]byte, 4096)
	if _, err := io.ReadFull(f, head); err != nil {
		t.Fatal(err)
	}
	if err := svc.Delete(ctx, img.ID); err != nil {
		t.Fatal(err)
	}
	st, err := gc.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Swept != 0 {
		t.Fatalf("GC swept %d chunks of an image that is still open", st.Swept)
	}
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatalf("read the deleted, still open image: %v", err)
	}
	if !bytes.Equal(append(head, got...), data) {
		t.Fatal("the deleted, still open image reads different bytes")
	}
	f.Close()
	// The release (and the reader's close) is asynchronous.
	eventually(t, 5*time.Second, "the open count drops to 0 after close", func() bool { return open.Open() == 0 })
	st, err = gc.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Swept == 0 || st.ChunksAfter != 0 {
		t.Fatalf("after the last close GC swept %d chunks, %d left; want everything swept", st.Swept, st.ChunksAfter)
	}
}
