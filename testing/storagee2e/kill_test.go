package storagee2e

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestKill9MidUploadThenGC kills the node with SIGKILL while an upload is
// streaming (after some of its chunks are stored), restarts it, and checks
// that the image is back in queued (never active), that the other image is
// intact, that `mosaic gc` brings the chunk count back to what it was
// before the upload, and that the upload then succeeds.
func TestKill9MidUploadThenGC(t *testing.T) {
	// Small memtables: chunks are flushed (durable) every 2 MiB, so the
	// killed uploads leave durable orphans for GC to find.
	node := harness.StartNode(t, harness.NodeOptions{Extra: []string{"--gc-interval", "0", "--chunk-memtable-bytes", "2097152"}})
	keep := randomData(6<<20, 2)
	keepID := createImage(t, node.URL(), "keep")
	upload(t, node.URL(), keepID, keep)
	baseline := storeChunks(t, node)
	orphanRounds := 0
	for round, cut := range []int{9 << 20, 24 << 20} { // ingest reads 4 MiB blocks
		id := createImage(t, node.URL(), "killed")
		data := randomData(40<<20, uint64(10+round))
		pr, pw := io.Pipe()
		go func() {
			req, _ := http.NewRequest("PUT", node.URL()+"/v2/images/"+id+"/file", pr)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			pr.CloseWithError(io.ErrClosedPipe)
		}()
		if _, err := pw.Write(data[:cut]); err != nil {
			t.Fatal(err)
		}
		// Wait until the node has stored chunks of this upload, several
		// memtables' worth.
		deadline := time.Now().Add(90 * time.Second)
		for storeChunks(t, node) <= baseline+(cut>>16)/2 {
			if time.Now().After(deadline) {
				t.Fatal("the upload stored too few chunks within 90 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if st, _ := imageStatus(t, node.URL(), id); st != "saving" {
			t.Fatalf("round %d: image is %s mid-upload, want saving", round, st)
		}
		node.Kill()
		pw.CloseWithError(io.ErrClosedPipe)
		node.Start()

		st, img := imageStatus(t, node.URL(), id)
		if st != "queued" || img["size"] != nil || img["checksum"] != nil {
			t.Fatalf("round %d: after kill -9 the image is %s (size %v, checksum %v), want queued with no data", round, st, img["size"], img["checksum"])
		}
		if code, _ := do(t, "GET", node.URL()+"/v2/images/"+id+"/file", "", nil); code != http.StatusNoContent {
			t.Fatalf("round %d: download of the killed upload answered %d, want 204 (no data)", round, code)
		}
		checkDownload(t, node.URL(), keepID, keep)
		// Flushes are asynchronous: on a loaded machine a round may lose
		// all its chunks in the crash (fine: nothing refers to them). At
		// least one round must leave orphans, or GC is not tested.
		orphans := storeChunks(t, node) - baseline
		if orphans < 0 {
			t.Fatalf("round %d: %d chunks fewer than before the upload after the crash", round, -orphans)
		}
		if orphans > 0 {
			orphanRounds++
		}
		out := harness.Run(t, t.Context(), nil, harness.Binary(t), "gc", "--url", node.URL(), "--grace", "0s")
		if n := storeChunks(t, node); n != baseline {
			t.Fatalf("round %d: %d chunks after `mosaic gc`, want the baseline %d (%s)", round, n, baseline, out)
		}
		t.Logf("round %d (killed after %d MiB, %d orphan chunks): %s", round, cut>>20, orphans, strings.TrimSpace(out))
		checkDownload(t, node.URL(), keepID, keep)

		// The image accepts an upload again.
		upload(t, node.URL(), id, data)
		checkDownload(t, node.URL(), id, data)
		baseline = storeChunks(t, node)
	}
	if orphanRounds == 0 {
		t.Fatal("no round left durable orphans after kill -9: GC's reclaiming was not exercised")
	}
}

func checkDownload(t *testing.T, base, id string, want []byte) {
	t.Helper()
	st, body := do(t, "GET", base+"/v2/images/"+id+"/file", "", nil)
	if st != http.StatusOK || !bytes.Equal(body, want) {
		sum := md5.Sum(body)
		t.Fatalf("download %s: %d, %d bytes (md5 %s), want %d bytes", id, st, len(body), hex.EncodeToString(sum[:]), len(want))
	}
}
