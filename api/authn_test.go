package api_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/api/auth"
)

func tokenFile(t *testing.T, lines string) *auth.TokenFile {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := auth.LoadTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return tf
}

// keystoneBody is keystonemiddleware's 401 answer.
const keystoneBody = `{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}`

func TestTokenAuthMiddleware(t *testing.T) {
	srv := newServerAuth(t, tokenFile(t, "tokA userA pA member,reader\ntokB userB pB member,reader\nadm root pAdmin admin,member,reader\n"))
	for _, path := range []string{"/", "/versions"} {
		if r := do(t, srv, "GET", path, nil, ""); r.status != 300 && r.status != 200 {
			t.Fatalf("GET %s without a token: %d (version documents are public)", path, r.status)
		}
	}
	for _, tok := range []string{"", "nope", "tokAX", "toka"} {
		for _, path := range []string{"/v2/images", "/v2/schemas/image", "/v2", "/v2/nothing-here", "/v2.1/images"} {
			r := do(t, srv, "GET", path, map[string]string{"X-Auth-Token": tok}, "")
			if r.status != 401 || r.body != keystoneBody || r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("GET %s token %q: %d %s", path, tok, r.status, r.body)
			}
			if h := r.header.Get("WWW-Authenticate"); h != "" {
				t.Fatalf("token mode sent a challenge %q", h)
			}
		}
	}
	// Writes by an unauthenticated request change nothing.
	if r := do(t, srv, "POST", "/v2/images", jsonCT, `{"name":"x"}`); r.status != 401 {
		t.Fatalf("unauthenticated create: %d", r.status)
	}
	a := map[string]string{"X-Auth-Token": "tokA", "Content-Type": "application/json"}
	r := do(t, srv, "POST", "/v2/images", a, `{"name":"secret-name-of-A","visibility":"private"}`)
	if r.status != 201 || jsonField(t, r.body, "owner") != "pA" {
		t.Fatalf("create as A: %d %s", r.status, r.body)
	}
	id := jsonField(t, r.body, "id")
	b := map[string]string{"X-Auth-Token": "tokB"}
	r = do(t, srv, "GET", "/v2/images/"+id, b, "")
	if r.status != 404 || strings.Contains(r.body, "secret-name-of-A") {
		t.Fatalf("B shows A's private image: %d %s", r.status, r.body)
	}
	r = do(t, srv, "GET", "/v2/images", b, "")
	if r.status != 200 || strings.Contains(r.body, id) {
		t.Fatalf("B lists A's private image: %d %s", r.status, r.body)
	}
	if r = do(t, srv, "GET", "/v2/images/"+id, map[string]string{"X-Auth-Token": "adm"}, ""); r.status != 200 {
		t.Fatalf("admin shows A's image: %d %s", r.status, r.body)
	}

	// The store-wide usage is the admin's.
	var u map[string]any
	r = do(t, srv, "GET", "/v2/info/usage", b, "")
	if json.Unmarshal([]byte(r.body), &u) != nil || u["mosaic"] != nil {
		t.Fatalf("member's usage: %s", r.body)
	}
	r = do(t, srv, "GET", "/v2/info/usage", map[string]string{"X-Auth-Token": "adm"}, "")
	if json.Unmarshal([]byte(r.body), &u) != nil || u["mosaic"] == nil {
		t.Fatalf("admin's usage: %s", r.body)
	}
}

// TestKeystoneUnreachable: a Keystone that cannot be reached never lets a
// request through: 503, and a 401 challenge still names it.
func TestKeystoneUnreachable(t *testing.T) {
	k, err := auth.NewKeystone(auth.KeystoneConfig{URL: "http://127.0.0.1:1", PublicURL: "https://keystone.example.com/v3"})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServerAuth(t, k)
	r := do(t, srv, "GET", "/v2/images", nil, "")
	if r.status != 401 || r.body != keystoneBody || r.header.Get("WWW-Authenticate") != `Keystone uri="https://keystone.example.com"` {
		t.Fatalf("no token: %d %q %s", r.status, r.header.Get("WWW-Authenticate"), r.body)
	}
	for _, path := range []string{"/v2/images", "/v2/images/00000000-0000-0000-0000-000000000000", "/v2/info/usage"} {
		r = do(t, srv, "GET", path, map[string]string{"X-Auth-Token": "gAAAAAsomething", "Accept": "application/json"}, "")
		if r.status != 503 || !strings.Contains(r.body, "The Keystone service is temporarily unavailable.") {
			t.Fatalf("GET %s with Keystone down: %d %s", path, r.status, r.body)
		}
	}
	if r = do(t, srv, "POST", "/v2/images", map[string]string{"X-Auth-Token": "x", "Content-Type": "application/json"}, `{}`); r.status != 503 {
		t.Fatalf("create with Keystone down: %d %s", r.status, r.body)
	}
	if r = do(t, srv, "GET", "/versions", nil, ""); r.status != 200 {
		t.Fatalf("versions with Keystone down: %d", r.status)
	}
}
