package storagee2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/mosaicimg/mosaic/api"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/raftmeta"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// diskFull fails every write, sync and create with ENOSPC while on.
type diskFull struct{ on atomic.Bool }

func (d *diskFull) MaybeError(op errorfs.Op) error {
	if !d.on.Load() {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData,
		errorfs.OpFileSyncTo, errorfs.OpCreate:
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
	}
	return nil
}

func (d *diskFull) String() string { return "diskFull" }

// TestDiskFullFailsUploadCleanly runs a node's parts in process (real Raft,
// real Pebble on a file system that can run out of space, the real API) and
// fills the disk during an upload: the client gets Glance's 413, the image
// is back in queued with no data, other images still download, metadata
// still changes, and once space is back the same upload succeeds.
func TestDiskFullFailsUploadCleanly(t *testing.T) {
	dir := t.TempDir()
	inj := &diskFull{}
	chunks, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dir, "chunks"), FS: errorfs.Wrap(vfs.Default, inj),
		MemTableSize: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chunks.Close() })
	meta, err := raftmeta.Open(raftmeta.Config{NodeID: "n1", Dir: filepath.Join(dir, "raft"),
		RaftAddr: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t, "127.0.0.1")), Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	if err := meta.WaitLeader(t.Context()); err != nil {
		t.Fatal(err)
	}
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: "n1"}, meta, chunks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Options{Images: svc, Usage: svc}))
	t.Cleanup(srv.Close)

	good := randomData(6<<20, 3)
	goodID := createImage(t, srv.URL, "good")
	upload(t, srv.URL, goodID, good)

	inj.on.Store(true)
	data := randomData(24<<20, 4)
	id := createImage(t, srv.URL, "fills-the-disk")
	st, body := do(t, "PUT", srv.URL+"/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data))
	if st != http.StatusRequestEntityTooLarge {
		t.Fatalf("upload onto a full disk: %d %s, want 413", st, body)
	}
	status, img := imageStatus(t, srv.URL, id)
	if status != "queued" || img["size"] != nil || img["checksum"] != nil {
		t.Fatalf("after the failed upload the image is %s (size %v, checksum %v), want queued with no data", status, img["size"], img["checksum"])
	}
	rec, err := svc.Get(t.Context(), id)
	if err != nil || !rec.ManifestRoot.IsZero() {
		t.Fatalf("record after the failed upload: %v, manifest root %s", err, rec.ManifestRoot)
	}
	// The node keeps serving: reads, listings and metadata writes.
	checkDownload(t, srv.URL, goodID, good)
	if st, b := do(t, "GET", srv.URL+"/v2/images", "", nil); st != http.StatusOK {
		t.Fatalf("list while the disk is full: %d %s", st, b)
	}
	createImage(t, srv.URL, "created-while-full")

	inj.on.Store(false)
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, body := do(t, "PUT", srv.URL+"/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data))
		if st == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("upload after space came back: %d %s", st, body)
		}
	}
	checkDownload(t, srv.URL, id, data)
}
