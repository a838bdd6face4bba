// Package keystone runs Debian's real Keystone for tests (start.sh beside
// this file) and drives its v3 API to create projects, users, role
// assignments and tokens. It fails the test, never skips, when Keystone is
// not installed.
package keystone

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// Keystone is a running Keystone with an admin account.
type Keystone struct {
	URL           string
	AdminPassword string
	pidFile       string
	client        *http.Client

	mu         sync.Mutex
	adminToken string
}

var (
	shared   *Keystone
	startErr error
	once     sync.Once
)

// Shared returns the test binary's Keystone, starting it on first use: the
// one named by MOSAIC_KEYSTONE_URL (and MOSAIC_KEYSTONE_ADMIN_PASSWORD) if
// set — .ci/run starts one on 127.0.0.1:5000 — or a new one on a free port.
// Call Stop from TestMain.
func Shared(t testing.TB) *Keystone {
	t.Helper()
	once.Do(func() {
		if u := os.Getenv("MOSAIC_KEYSTONE_URL"); u != "" {
			pw := os.Getenv("MOSAIC_KEYSTONE_ADMIN_PASSWORD")
			if pw == "" {
				pw = "adminpw"
			}
			shared = &Keystone{URL: strings.TrimRight(u, "/"), AdminPassword: pw, client: newClient()}
			return
		}
		shared, startErr = start(harness.RepoRoot(t))
	})
	if startErr != nil {
		t.Fatal(startErr)
	}
	return shared
}

// Stop stops a Keystone this package started.
func Stop() {
	if shared == nil || shared.pidFile == "" {
		return
	}
	b, err := os.ReadFile(shared.pidFile)
	if err != nil {
		return
	}
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
}

func start(root string) (*Keystone, error) {
	if _, err := exec.LookPath("keystone-manage"); err != nil {
		return nil, fmt.Errorf("keystone is not installed (apt-get install keystone; .ci/run installs it): the Keystone tests cannot run")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "mosaic-keystone-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(root, "testing/keystone/start.sh"), dir, strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "KEYSTONE_ADMIN_PASSWORD=adminpw")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("start keystone: %v\n%s", err, out)
	}
	return &Keystone{
		URL: strings.TrimSpace(lastLine(string(out))), AdminPassword: "adminpw",
		pidFile: filepath.Join(dir, "uwsgi.pid"), client: newClient(),
	}, nil
}

// newClient returns the harness's client. It opens a connection per
// request: uwsgi closes idle keep-alive connections on its own schedule,
// and a POST sent on one it just closed fails with EOF and is not retried.
func newClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// call performs a v3 request with token tok and decodes a JSON answer into out.
func (k *Keystone) call(method, path, tok string, body, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, k.URL+"/v3"+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("X-Auth-Token", tok)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return resp, fmt.Errorf("keystone %s %s: HTTP %d: %s", method, path, resp.StatusCode, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp, fmt.Errorf("keystone %s %s: %v", method, path, err)
		}
	}
	return resp, nil
}

func passwordAuth(user, password string, project map[string]any) map[string]any {
	return map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
			"user": map[string]any{"name": user, "password": password, "domain": map[string]string{"id": "default"}},
		}},
		"scope": map[string]any{"project": project},
	}}
}

func (k *Keystone) issue(t testing.TB, user, password string, project map[string]any) string {
	t.Helper()
	resp, err := k.call("POST", "/auth/tokens?nocatalog", "", passwordAuth(user, password, project), nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Get("X-Subject-Token")
}

// Token issues a token for a user scoped to a project (by ID).
func (k *Keystone) Token(t testing.TB, user, password, projectID string) string {
	t.Helper()
	return k.issue(t, user, password, map[string]any{"id": projectID})
}

func (k *Keystone) admin(t testing.TB) string {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.adminToken == "" {
		k.adminToken = k.AdminToken(t)
	}
	return k.adminToken
}

// AdminToken issues a token for the bootstrap admin in project "admin".
func (k *Keystone) AdminToken(t testing.TB) string {
	t.Helper()
	return k.issue(t, "admin", k.AdminPassword, map[string]any{"name": "admin", "domain": map[string]string{"id": "default"}})
}

// CreateProject creates a project and returns its ID.
func (k *Keystone) CreateProject(t testing.TB, name string) string {
	t.Helper()
	var out struct{ Project struct{ ID string } }
	if _, err := k.call("POST", "/projects", k.admin(t), map[string]any{"project": map[string]any{"name": name, "domain_id": "default"}}, &out); err != nil {
		t.Fatal(err)
	}
	return out.Project.ID
}

// CreateUser creates a user and returns its ID.
func (k *Keystone) CreateUser(t testing.TB, name, password string) string {
	t.Helper()
	var out struct{ User struct{ ID string } }
	if _, err := k.call("POST", "/users", k.admin(t), map[string]any{"user": map[string]any{"name": name, "password": password, "domain_id": "default"}}, &out); err != nil {
		t.Fatal(err)
	}
	return out.User.ID
}

// Grant gives a user a role (admin, member or reader) on a project.
func (k *Keystone) Grant(t testing.TB, projectID, userID, role string) {
	t.Helper()
	var roles struct{ Roles []struct{ ID, Name string } }
	if _, err := k.call("GET", "/roles?name="+role, k.admin(t), nil, &roles); err != nil || len(roles.Roles) != 1 {
		t.Fatalf("keystone role %q: %v (%d found)", role, err, len(roles.Roles))
	}
	if _, err := k.call("PUT", "/projects/"+projectID+"/users/"+userID+"/roles/"+roles.Roles[0].ID, k.admin(t), nil, nil); err != nil {
		t.Fatal(err)
	}
}

// Revoke revokes a token.
func (k *Keystone) Revoke(t testing.TB, tok string) {
	t.Helper()
	req, _ := http.NewRequest("DELETE", k.URL+"/v3/auth/tokens", nil)
	req.Header.Set("X-Auth-Token", k.admin(t))
	req.Header.Set("X-Subject-Token", tok)
	resp, err := k.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke token: HTTP %d", resp.StatusCode)
	}
}

// ShortLivedToken returns a token that expires after about ttl (whole
// seconds, at least 2): it is issued through an application credential
// whose expiry caps the token's, which is how Keystone can be asked for a
// short token without changing its configuration.
func (k *Keystone) ShortLivedToken(t testing.TB, userID, user, password, projectID string, ttl time.Duration) (string, time.Time) {
	t.Helper()
	userTok := k.Token(t, user, password, projectID)
	// Keystone refuses a credential whose expiry has passed by the time it
	// handles the request, and a token for an expired credential; on a
	// loaded machine one request takes seconds (password hashing, one
	// worker), so the whole exchange is retried with a longer life.
	var lastErr error
	for attempt := range 4 {
		life := ttl << attempt
		tok, got, err := k.shortLivedToken(userID, userTok, life)
		if err == nil {
			return tok, got
		}
		lastErr = err
		if !strings.Contains(err.Error(), "must not be before now") && !strings.Contains(err.Error(), "HTTP 401") {
			break
		}
		t.Logf("short-lived token with a %v life: %v; retrying with a longer one", life, err)
	}
	t.Fatal(lastErr)
	return "", time.Time{}
}

func (k *Keystone) shortLivedToken(userID, userTok string, ttl time.Duration) (string, time.Time, error) {
	var cred struct {
		ApplicationCredential struct{ ID, Secret string } `json:"application_credential"`
	}
	exp := time.Now().UTC().Add(ttl).Truncate(time.Second)
	name := fmt.Sprintf("short-%d", time.Now().UnixNano())
	if _, err := k.call("POST", "/users/"+userID+"/application_credentials", userTok, map[string]any{
		"application_credential": map[string]any{"name": name, "expires_at": exp.Format("2006-01-02T15:04:05")},
	}, &cred); err != nil {
		return "", time.Time{}, err
	}
	var issued struct {
		Token struct {
			ExpiresAt string `json:"expires_at"`
		}
	}
	resp, err := k.call("POST", "/auth/tokens?nocatalog", "", map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"application_credential"}, "application_credential": map[string]any{
			"id": cred.ApplicationCredential.ID, "secret": cred.ApplicationCredential.Secret,
		}},
	}}, &issued)
	if err != nil {
		return "", time.Time{}, err
	}
	got, err := parseTime(issued.Token.ExpiresAt)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("short-lived token: expires_at %q: %v", issued.Token.ExpiresAt, err)
	}
	if got.After(exp.Add(time.Second)) {
		return "", time.Time{}, fmt.Errorf("short-lived token expires at %v, not capped at %v", got, exp)
	}
	return resp.Header.Get("X-Subject-Token"), got, nil
}

// parseTime reads Keystone's timestamps, with or without a zone (UTC).
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	return time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
}

// AddImageEndpoint registers url as the public image (Glance) endpoint of
// a new service in a new region, so that clients which read the catalog
// (openstack, gophercloud with a Keystone session) find Mosaic there. The
// region is unique to the caller: pass it as --os-region-name.
func (k *Keystone) AddImageEndpoint(t testing.TB, region, url string) {
	t.Helper()
	if _, err := k.call("POST", "/regions", k.admin(t), map[string]any{"region": map[string]any{"id": region}}, nil); err != nil {
		t.Fatal(err)
	}
	var svc struct{ Service struct{ ID string } }
	if _, err := k.call("POST", "/services", k.admin(t), map[string]any{"service": map[string]any{"type": "image", "name": "mosaic-" + region}}, &svc); err != nil {
		t.Fatal(err)
	}
	// Clients look up Keystone itself in the region too (to resolve
	// project names), so the region gets an identity endpoint as well.
	var identity struct{ Services []struct{ ID string } }
	if _, err := k.call("GET", "/services?type=identity", k.admin(t), nil, &identity); err != nil || len(identity.Services) == 0 {
		t.Fatalf("keystone identity service: %v (%d found)", err, len(identity.Services))
	}
	for _, ep := range []struct{ service, url string }{{svc.Service.ID, url}, {identity.Services[0].ID, k.URL + "/v3/"}} {
		for _, iface := range []string{"public", "internal"} {
			if _, err := k.call("POST", "/endpoints", k.admin(t), map[string]any{"endpoint": map[string]any{
				"service_id": ep.service, "interface": iface, "url": ep.url, "region_id": region,
			}}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
}
