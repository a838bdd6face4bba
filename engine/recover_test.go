package engine_test

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// An upload left in saving by an earlier run of the node (a crash) reads
// back as queued from the first Get of the new run, while an upload the new
// run has started is left alone by RecoverUploads however early it runs.
func TestRestartedNodeResetsOnlyItsDeadUploads(t *testing.T) {
	ctx := t.Context()
	e := newEnv(t, nil)
	dead, err := e.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	// The first run dies mid-upload: the stream stalls until the test ends.
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(io.ErrClosedPipe) })
	go func() { _, _ = e.svc.Upload(ctx, dead.ID, pr) }()
	if _, err := pw.Write(randomData(64<<10, 1)); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, e, dead.ID, engine.StatusSaving)

	// The second run of the same node over the same stores.
	svc2, _ := rebuild(t, e)
	live, err := svc2.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	pr2, pw2 := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := svc2.Upload(ctx, live.ID, pr2)
		done <- err
	}()
	data := randomData(256<<10, 2)
	if _, err := pw2.Write(data[:64<<10]); err != nil {
		t.Fatal(err)
	}
	for {
		img, err := e.images.GetImage(ctx, live.ID)
		if err != nil {
			t.Fatal(err)
		}
		if img.Status == engine.StatusSaving {
			break
		}
		time.Sleep(time.Millisecond)
	}

	got, err := svc2.Get(ctx, dead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != engine.StatusQueued || got.Upload != nil {
		t.Fatalf("the dead upload's image reads as %s (upload %v), want queued", got.Status, got.Upload)
	}
	if err := svc2.RecoverUploads(ctx); err != nil {
		t.Fatal(err)
	}
	if img, _ := svc2.Get(ctx, live.ID); img.Status != engine.StatusSaving {
		t.Fatalf("recovery touched a live upload: %s", img.Status)
	}
	if _, err := pw2.Write(data[64<<10:]); err != nil {
		t.Fatal(err)
	}
	pw2.Close()
	if err := <-done; err != nil {
		t.Fatalf("the live upload failed: %v", err)
	}
	r, _, err := svc2.Open(ctx, live.ID)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := io.ReadAll(io.NewSectionReader(r, 0, int64(len(data))))
	if !bytes.Equal(back, data) {
		t.Fatal("the live upload reads back different bytes")
	}
}

func waitStatus(t *testing.T, e *env, id string, want engine.Status) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		img, err := e.images.GetImage(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if img.Status == want {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("image %s never reached %s", id, want)
}
