package signing

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestSignedImport checks that the interoperable import (stage, then
// glance-direct) verifies signatures as uploads do: a good signature makes
// the image active and verified; a bad one fails the task and leaves the
// image queued (Glance has no importing → killed transition), never active.
func TestSignedImport(t *testing.T) {
	t.Parallel()
	node := harness.StartNode(t, harness.NodeOptions{})
	base := node.URL()
	work := t.TempDir()
	data := randomData(3<<20, 11)
	dataPath := writeFile(t, work, "image.raw", data)
	key := newKey(t, work, engine.KeyTypeECCSECP384R1, "ec")
	cert := storeCert(t, base, selfSignedCert(t, key, "ec"))
	// SHA-256 differs from the default os_hash (SHA-512), so the import
	// must read the staged data again for the digest.
	good := sign(t, key, engine.KeyTypeECCSECP384R1, "SHA-256", dataPath)
	other := randomData(3<<20, 12)
	bad := sign(t, key, engine.KeyTypeECCSECP384R1, "SHA-256", writeFile(t, work, "other.raw", other))

	importAndWait := func(sig string) map[string]any {
		t.Helper()
		id := createImage(t, base, "signed-import", signatureProps(sig, "SHA-256", engine.KeyTypeECCSECP384R1, cert))
		r := do(t, "PUT", base+"/v2/images/"+id+"/stage", map[string]string{"Content-Type": "application/octet-stream"}, data)
		if r.status != http.StatusNoContent {
			t.Fatalf("stage: %d %s", r.status, r.body)
		}
		r = do(t, "POST", base+"/v2/images/"+id+"/import", jsonHeaders, []byte(`{"method":{"name":"glance-direct"}}`))
		if r.status != http.StatusAccepted {
			t.Fatalf("import: %d %s", r.status, r.body)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			img := showImage(t, base, id)
			if st := img["status"]; st == "active" || st == "queued" {
				return img
			}
			if time.Now().After(deadline) {
				t.Fatalf("import did not finish: %v", img)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	img := importAndWait(good)
	if img["status"] != "active" {
		t.Fatalf("validly signed import ended %v", img["status"])
	}
	r := do(t, "GET", base+"/v2/images/"+img["id"].(string)+"/file", nil, nil)
	if r.status != http.StatusOK || len(r.body) != len(data) {
		t.Fatalf("download of the imported image: %d, %d bytes", r.status, len(r.body))
	}

	img = importAndWait(bad)
	id := img["id"].(string)
	if img["status"] != "queued" {
		t.Fatalf("badly signed import ended %v, want queued", img["status"])
	}
	if r := do(t, "GET", base+"/v2/images/"+id+"/file", nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("download of the refused import: %d", r.status)
	}
	tasks := do(t, "GET", base+"/v2/images/"+id+"/tasks", map[string]string{"Accept": "application/json"}, nil).json(t)["tasks"].([]any)
	if len(tasks) == 0 {
		t.Fatal("no task for the refused import")
	}
	task := tasks[len(tasks)-1].(map[string]any)
	if task["status"] != "failure" || !strings.Contains(task["message"].(string), "Signature verification failed") {
		t.Fatalf("refused import task: %v", task)
	}
}
