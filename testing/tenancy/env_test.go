package tenancy

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
	"github.com/mosaicimg/mosaic/testing/keystone"
)

func TestMain(m *testing.M) {
	code := m.Run()
	keystone.Stop()
	os.Exit(code)
}

// env is one mosaic node in an auth mode, with the identities the
// scenarios act as: two projects, a member of each, a reader-only user of
// A, and a cloud admin.
type env struct {
	mode string
	node *harness.Process
	// Projects and tokens.
	projA, projB                     string
	memberA, memberB, readerA, admin string
	// challenge is the WWW-Authenticate a 401 must carry ("" in token mode).
	challenge string
	// refused are tokens that must get 401, by what is wrong with them.
	refused map[string]string
	// ks is the Keystone (keystone mode only).
	ks *keystone.Keystone
	// users are the Keystone user names, by token field (keystone mode).
	users map[string]string
}

const userPassword = "tenancy-pw-1"

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// newTokenEnv starts mosaic with --auth token.
func newTokenEnv(t *testing.T) *env {
	t.Helper()
	e := &env{mode: "token", projA: "proj-a-" + randomHex(4), projB: "proj-b-" + randomHex(4)}
	e.memberA, e.memberB, e.readerA, e.admin = "tok-a-"+randomHex(16), "tok-b-"+randomHex(16), "tok-r-"+randomHex(16), "tok-adm-"+randomHex(16)
	file := filepath.Join(t.TempDir(), "tokens")
	lines := fmt.Sprintf("# TOKEN USER PROJECT ROLES\n%s user-a %s member,reader\n%s user-b %s member,reader\n%s user-r %s reader\n%s root admin admin,member,reader\n",
		e.memberA, e.projA, e.memberB, e.projB, e.readerA, e.projA, e.admin)
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	e.node = harness.StartNode(t, harness.NodeOptions{Extra: []string{"--auth", "token", "--token-file", file}})
	e.refused = map[string]string{
		"malformed":        "not a token",
		"unknown":          "tok-a-" + randomHex(16),
		"another's prefix": e.memberA[:len(e.memberA)-1],
	}
	return e
}

// keystoneCacheTTL is short so that the revocation test sees the cache
// let go of a revoked token.
const keystoneCacheTTL = 3 * time.Second

// newKeystoneEnv starts mosaic with --auth keystone against the shared
// Keystone, validating tokens with the admin account as its service user.
func newKeystoneEnv(t *testing.T) *env {
	t.Helper()
	ks := keystone.Shared(t)
	suffix := randomHex(4)
	e := &env{mode: "keystone", ks: ks, challenge: fmt.Sprintf("Keystone uri=%q", ks.URL), users: map[string]string{}}
	e.projA = ks.CreateProject(t, "tenancy-a-"+suffix)
	e.projB = ks.CreateProject(t, "tenancy-b-"+suffix)
	user := func(field, name, project, role string) string {
		name += "-" + suffix
		id := ks.CreateUser(t, name, userPassword)
		ks.Grant(t, project, id, role)
		e.users[field] = name
		return ks.Token(t, name, userPassword, project)
	}
	e.memberA = user("memberA", "alice", e.projA, "member")
	e.memberB = user("memberB", "bob", e.projB, "member")
	e.readerA = user("readerA", "rita", e.projA, "reader")
	e.admin = ks.AdminToken(t)
	pwFile := filepath.Join(t.TempDir(), "service-password")
	if err := os.WriteFile(pwFile, []byte(ks.AdminPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.node = harness.StartNode(t, harness.NodeOptions{Extra: []string{"--auth", "keystone", "--keystone-url", ks.URL,
		"--keystone-service-user", "admin", "--keystone-service-project", "admin", "--keystone-service-password-file", pwFile,
		"--keystone-cache-ttl", keystoneCacheTTL.String()}})
	revoked := ks.Token(t, e.users["memberA"], userPassword, e.projA)
	ks.Revoke(t, revoked)
	e.refused = map[string]string{
		"malformed":       "not a token",
		"fernet-shaped":   "gAAAAABnot-a-real-fernet-token-" + randomHex(32),
		"revoked":         revoked,
		"truncated valid": e.memberA[:len(e.memberA)-4],
	}
	return e
}

// response is an API answer.
type response struct {
	status int
	header http.Header
	body   string
}

// call performs a request as token tok ("" sends none). Headers come in
// pairs after the body.
func (e *env) call(t *testing.T, tok, method, path, body string, headers ...string) response {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.node.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("X-Auth-Token", tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(b)}
}

// expect performs a request and fails unless it answers status.
func (e *env) expect(t *testing.T, status int, tok, method, path, body string, headers ...string) response {
	t.Helper()
	r := e.call(t, tok, method, path, body, headers...)
	if r.status != status {
		t.Fatalf("%s %s %s as %s: %d %s, want %d", e.mode, method, path, e.who(tok), r.status, r.body, status)
	}
	return r
}

func (e *env) who(tok string) string {
	switch tok {
	case e.memberA:
		return "member of A"
	case e.memberB:
		return "member of B"
	case e.readerA:
		return "reader of A"
	case e.admin:
		return "admin"
	case "":
		return "no token"
	}
	return "token " + tok
}

func field(t *testing.T, body, key string) any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, body)
	}
	return m[key]
}

// listIDs lists images as tok with query q and returns their IDs.
func (e *env) listIDs(t *testing.T, tok, q string) map[string]bool {
	t.Helper()
	r := e.expect(t, 200, tok, "GET", "/v2/images?limit=1000&"+q, "")
	var page struct{ Images []struct{ ID string } }
	if err := json.Unmarshal([]byte(r.body), &page); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, img := range page.Images {
		out[img.ID] = true
	}
	return out
}

// upload puts data into an image as tok.
func (e *env) upload(t *testing.T, tok, id string, data []byte) {
	t.Helper()
	req, _ := http.NewRequest("PUT", e.node.URL()+"/v2/images/"+id+"/file", bytes.NewReader(data))
	req.Header.Set("X-Auth-Token", tok)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("upload %s: %d %s", id, resp.StatusCode, b)
	}
}
