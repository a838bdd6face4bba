package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestKeyManagerAPI drives the Barbican v1 subset over HTTP: store, show,
// payload, list, delete, Barbican's error shapes, and durability across a
// kill -9 (the secrets live in Raft).
func TestKeyManagerAPI(t *testing.T) {
	t.Parallel()
	node := harness.StartNode(t, harness.NodeOptions{})
	base := node.URL()
	dir := t.TempDir()
	certPath := selfSignedCert(t, newKey(t, dir, engine.KeyTypeECCSECP384R1, "kmtest"), "key-manager-test")
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(pemBytes)
	post := func(path string, body map[string]any) response {
		b, _ := json.Marshal(body)
		return do(t, "POST", base+path, jsonHeaders, b)
	}
	certBody := func(extra map[string]any) map[string]any {
		m := map[string]any{"name": "signing-cert", "secret_type": "certificate",
			"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64", "payload": b64}
		for k, v := range extra {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}

	// Store: 201, secret_ref and Location.
	r := post("/v1/secrets", certBody(nil))
	if r.status != http.StatusCreated {
		t.Fatalf("store: %d %s", r.status, r.body)
	}
	ref := r.json(t)["secret_ref"].(string)
	if !strings.HasPrefix(ref, base+"/v1/secrets/") || r.header.Get("Location") != ref {
		t.Fatalf("secret_ref %q, Location %q", ref, r.header.Get("Location"))
	}
	id := ref[strings.LastIndex(ref, "/")+1:]
	// python-barbicanclient posts to "secrets/"; a PEM can also be text/plain.
	r = post("/v1/secrets/", certBody(map[string]any{"name": "as-text", "payload_content_type": "text/plain",
		"payload_content_encoding": nil, "payload": string(pemBytes)}))
	if r.status != http.StatusCreated {
		t.Fatalf("store text/plain at secrets/: %d %s", r.status, r.body)
	}
	textID := strings.TrimPrefix(r.json(t)["secret_ref"].(string), base+"/v1/secrets/")

	// Metadata.
	meta := do(t, "GET", base+"/v1/secrets/"+id, map[string]string{"Accept": "application/json"}, nil).json(t)
	ct, _ := meta["content_types"].(map[string]any)
	if meta["secret_ref"] != ref || meta["name"] != "signing-cert" || meta["secret_type"] != "certificate" ||
		meta["status"] != "ACTIVE" || ct["default"] != "application/octet-stream" || meta["created"] == nil {
		t.Fatalf("metadata: %v", meta)
	}
	// Payload, by the payload resource and by the deprecated Accept form.
	for _, req := range []struct{ path, accept, wantCT string }{
		{"/v1/secrets/" + id + "/payload", "application/octet-stream", "application/octet-stream"},
		{"/v1/secrets/" + id + "/payload", "", "application/octet-stream"},
		{"/v1/secrets/" + id + "/payload", "text/plain", "text/plain; charset=utf-8"},
		{"/v1/secrets/" + id, "application/octet-stream", "application/octet-stream"},
		{"/v1/secrets/" + textID + "/payload", "text/plain", "text/plain; charset=utf-8"},
	} {
		h := map[string]string{}
		if req.accept != "" {
			h["Accept"] = req.accept
		}
		r := do(t, "GET", base+req.path, h, nil)
		if r.status != http.StatusOK || r.header.Get("Content-Type") != req.wantCT ||
			!bytes.Equal(bytes.TrimSpace(r.body), bytes.TrimSpace(pemBytes)) {
			t.Fatalf("GET %s (Accept %q): %d %s, %d bytes", req.path, req.accept, r.status, r.header.Get("Content-Type"), len(r.body))
		}
	}

	// List, filters, paging.
	list := do(t, "GET", base+"/v1/secrets", map[string]string{"Accept": "application/json"}, nil).json(t)
	if list["total"] != float64(2) || len(list["secrets"].([]any)) != 2 {
		t.Fatalf("list: %v", list)
	}
	list = do(t, "GET", base+"/v1/secrets?name=as-text", nil, nil).json(t)
	if list["total"] != float64(1) {
		t.Fatalf("list by name: %v", list)
	}
	list = do(t, "GET", base+"/v1/secrets?limit=1&offset=0", nil, nil).json(t)
	if len(list["secrets"].([]any)) != 1 || !strings.Contains(list["next"].(string), "offset=1") {
		t.Fatalf("paged list: %v", list)
	}

	// Errors in Barbican's shape, and nothing stored by them.
	for _, c := range []struct {
		name   string
		method string
		path   string
		header map[string]string
		body   map[string]any
		status int
		want   string
	}{
		{"bad id", "GET", "/v1/secrets/not-a-uuid", nil, nil, 404, "Provided secret id is invalid"},
		{"unknown id", "GET", "/v1/secrets/00000000-0000-4000-8000-000000000000", nil, nil, 404, "your secret is in another castle"},
		{"not json", "POST", "/v1/secrets", map[string]string{"Content-Type": "text/xml"}, certBody(nil), 415, "Expected content types are: ['application/json']"},
		{"no content type", "POST", "/v1/secrets", nil, certBody(map[string]any{"payload_content_type": nil}), 400, "'payload_content_type' must also be supplied"},
		{"binary without base64", "POST", "/v1/secrets", nil, certBody(map[string]any{"payload_content_encoding": nil}), 400, "payload_content_encoding is not one of"},
		{"bad base64", "POST", "/v1/secrets", nil, certBody(map[string]any{"payload": "%%%"}), 400, "Invalid payload for payload_content_encoding"},
		{"symmetric", "POST", "/v1/secrets", nil, certBody(map[string]any{"secret_type": "symmetric"}), 400, "secret_type 'symmetric' is not supported"},
		{"not a certificate", "POST", "/v1/secrets", nil, certBody(map[string]any{"payload": base64.StdEncoding.EncodeToString([]byte("hello"))}), 400, "must be an X.509 certificate"},
		{"too large", "POST", "/v1/secrets", nil, certBody(map[string]any{"payload": strings.Repeat("A", 12000)}), 413, "too large"},
		{"no update", "PUT", "/v1/secrets/" + id, map[string]string{"Content-Type": "text/plain"}, nil, 405, "not allowed"},
	} {
		var b []byte
		if c.body != nil {
			b, _ = json.Marshal(c.body)
		}
		h := map[string]string{"Content-Type": "application/json", "Accept": "application/json"}
		for k, v := range c.header {
			h[k] = v
		}
		r := do(t, c.method, base+c.path, h, b)
		m := map[string]any{}
		_ = json.Unmarshal(r.body, &m)
		if r.status != c.status || m["code"] != float64(c.status) || m["title"] != http.StatusText(c.status) ||
			!strings.Contains(m["description"].(string), c.want) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, r.status, r.body, c.status, c.want)
		}
	}
	if n := do(t, "GET", base+"/v1/secrets", nil, nil).json(t)["total"]; n != float64(2) {
		t.Fatalf("refused requests stored secrets: total %v", n)
	}

	// Durable through Raft: kill -9, restart, still there.
	node.Kill()
	node.Start()
	r = do(t, "GET", base+"/v1/secrets/"+id+"/payload", nil, nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, pemBytes) {
		t.Fatalf("after kill -9: %d, %d bytes", r.status, len(r.body))
	}

	// Delete.
	if r := do(t, "DELETE", base+"/v1/secrets/"+textID, nil, nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	if r := do(t, "DELETE", base+"/v1/secrets/"+textID, nil, nil); r.status != http.StatusNotFound {
		t.Fatalf("delete twice: %d %s", r.status, r.body)
	}
}

// TestBarbicanClient stores, reads, lists and deletes a certificate with
// the real python-barbicanclient CLI (unauthenticated, as against a
// Barbican in noauth mode).
func TestBarbicanClient(t *testing.T) {
	t.Parallel()
	harness.RequireTool(t, "barbican", "python3-barbicanclient")
	node := harness.StartNode(t, harness.NodeOptions{})
	certPath := selfSignedCert(t, newKey(t, t.TempDir(), engine.KeyTypeRSAPSS, "barb"), "barbican-cli")
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	bc := func(args ...string) string {
		t.Helper()
		full := append([]string{"--no-auth", "--endpoint", node.URL(), "--os-project-id", "demo"}, args...)
		out, errOut, err := harness.RunErr(context.Background(), []string{"HOME=" + t.TempDir()}, "barbican", full...)
		if err != nil {
			t.Fatalf("barbican %s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
		}
		return strings.TrimSpace(out)
	}
	href := bc("secret", "store", "--name", "signing-cert", "--secret-type", "certificate",
		"--payload-content-type", "application/octet-stream", "--payload-content-encoding", "base64",
		"--payload", base64.StdEncoding.EncodeToString(pemBytes), "-f", "value", "-c", "Secret href")
	if !strings.HasPrefix(href, node.URL()+"/v1/secrets/") {
		t.Fatalf("secret store printed %q", href)
	}
	if got := bc("secret", "get", "--payload", href, "-f", "value"); got != strings.TrimSpace(string(pemBytes)) {
		t.Fatalf("secret get --payload:\n%s\nwant\n%s", got, pemBytes)
	}
	if got := bc("secret", "list", "-f", "value", "-c", "Secret href"); got != href {
		t.Fatalf("secret list: %q", got)
	}
	bc("secret", "delete", href)
	if r := do(t, "GET", href, map[string]string{"Accept": "application/json"}, nil); r.status != http.StatusNotFound {
		t.Fatalf("after secret delete: %d %s", r.status, r.body)
	}
}
