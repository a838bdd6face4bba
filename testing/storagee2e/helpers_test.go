package storagee2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/testing/harness"
)

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// do sends a request to base+path and returns status and body.
func do(t *testing.T, method, url, ctype string, body io.Reader, hdr ...string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, b
}

func createImage(t *testing.T, base, name string) string {
	t.Helper()
	st, b := do(t, "POST", base+"/v2/images", "application/json",
		strings.NewReader(fmt.Sprintf(`{"name":%q,"disk_format":"raw","container_format":"bare"}`, name)))
	if st != http.StatusCreated {
		t.Fatalf("create image: %d %s", st, b)
	}
	var img struct{ ID string }
	if err := json.Unmarshal(b, &img); err != nil {
		t.Fatal(err)
	}
	return img.ID
}

func upload(t *testing.T, base, id string, data []byte) {
	t.Helper()
	st, b := do(t, "PUT", base+"/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data))
	if st != http.StatusNoContent {
		t.Fatalf("upload %s: %d %s", id, st, b)
	}
}

func imageStatus(t *testing.T, base, id string) (string, map[string]any) {
	t.Helper()
	st, b := do(t, "GET", base+"/v2/images/"+id, "", nil)
	if st != http.StatusOK {
		t.Fatalf("show %s: %d %s", id, st, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m["status"].(string)
	return s, m
}

// storeChunks returns the node's chunk count from `mosaic usage --json`.
func storeChunks(t *testing.T, p *harness.Process) int {
	t.Helper()
	out := harness.Run(t, t.Context(), nil, harness.Binary(t), "usage", "--url", p.URL(), "--json")
	var u struct {
		Store struct{ Chunks int }
	}
	if err := json.Unmarshal([]byte(out), &u); err != nil {
		t.Fatalf("mosaic usage --json: %v\n%s", err, out)
	}
	return u.Store.Chunks
}
