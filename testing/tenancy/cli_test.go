package tenancy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// runCLI runs a client with stdin on /dev/null (openstackclient crashes on
// a closed stdin; glanceclient reads data only when given --file here).
func runCLI(t *testing.T, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return harness.RunErr(ctx, env, "sh", append([]string{"-c", `exec "$0" "$@" </dev/null`, name}, args...)...)
}

func mustCLI(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, errOut, err := runCLI(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// glanceCLI drives the real glance client with each identity's token.
func glanceCLI(t *testing.T, e *env) {
	harness.RequireTool(t, "glance", "python3-glanceclient")
	as := func(tok string) []string {
		return []string{"OS_IMAGE_URL=" + e.node.URL(), "OS_AUTH_TOKEN=" + tok, "HOME=" + t.TempDir()}
	}
	file := filepath.Join(t.TempDir(), "cli.img")
	if err := os.WriteFile(file, []byte(strings.Repeat("glance-cli ", 5000)), 0o644); err != nil {
		t.Fatal(err)
	}
	name := "cli-private-" + randomHex(6)
	out := mustCLI(t, as(e.memberA), "glance", "image-create", "--name", name, "--disk-format", "raw",
		"--container-format", "bare", "--visibility", "private", "--file", file)
	var id string
	for _, line := range strings.Split(out, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) >= 3 && strings.TrimSpace(cells[1]) == "id" {
			id = strings.TrimSpace(cells[2])
		}
	}
	if id == "" {
		t.Fatalf("glance image-create printed no id:\n%s", out)
	}
	if out := mustCLI(t, as(e.memberA), "glance", "image-list"); !strings.Contains(out, name) {
		t.Fatalf("owner's glance image-list lacks %s:\n%s", name, out)
	}
	if out := mustCLI(t, as(e.memberB), "glance", "image-list"); strings.Contains(out, name) || strings.Contains(out, id) {
		t.Fatalf("B's glance image-list shows A's private image:\n%s", out)
	}
	_, errOut, err := runCLI(t, as(e.memberB), "glance", "image-show", id)
	if err == nil || !strings.Contains(errOut, "404") || strings.Contains(errOut, name) {
		t.Fatalf("B's glance image-show: %v\n%s", err, errOut)
	}
	_, errOut, err = runCLI(t, as(e.readerA), "glance", "image-update", "--name", "renamed", id)
	if err == nil || !strings.Contains(errOut, "403") {
		t.Fatalf("reader's glance image-update: %v\n%s", err, errOut)
	}
	_, errOut, err = runCLI(t, as("not-a-token"), "glance", "image-list")
	if err == nil || !strings.Contains(errOut, "Invalid OpenStack Identity credentials") {
		t.Fatalf("glance with a bad token: %v\n%s", err, errOut)
	}
	mustCLI(t, as(e.memberA), "glance", "image-delete", id)
}

// openstackCLI drives `openstack image ...` the way users do: password
// login against Keystone, the image endpoint from the catalog.
func openstackCLI(t *testing.T, e *env) {
	harness.RequireTool(t, "openstack", "python3-openstackclient")
	region := "Tenancy-" + randomHex(4)
	e.ks.AddImageEndpoint(t, region, e.node.URL())
	as := func(userField, project string) []string {
		return []string{"OS_AUTH_TYPE=password", "OS_AUTH_URL=" + e.ks.URL + "/v3", "OS_IDENTITY_API_VERSION=3",
			"OS_USERNAME=" + e.users[userField], "OS_PASSWORD=" + userPassword, "OS_PROJECT_ID=" + project,
			"OS_USER_DOMAIN_NAME=Default", "OS_REGION_NAME=" + region, "OS_INTERFACE=public", "HOME=" + t.TempDir()}
	}
	alice, bob, rita := as("memberA", e.projA), as("memberB", e.projB), as("readerA", e.projA)
	// The CLI is slow (a Python start and a Keystone login per command):
	// it runs the steps users type; the API checks between them.
	name := "osc-shared-" + randomHex(6)
	var img map[string]any
	out := mustCLI(t, alice, "openstack", "image", "create", "--disk-format", "raw", "--container-format", "bare",
		"--shared", "-f", "json", name)
	if err := json.Unmarshal([]byte(out), &img); err != nil {
		t.Fatalf("openstack image create: %v\n%s", err, out)
	}
	id, _ := img["id"].(string)
	if img["owner"] != e.projA || e.listIDs(t, e.memberB, "member_status=all")[id] {
		t.Fatalf("created %v; bob lists it before being added", img)
	}
	mustCLI(t, alice, "openstack", "image", "add", "project", id, e.projB)
	if e.listIDs(t, e.memberB, "")[id] || !e.listIDs(t, e.memberB, "member_status=pending")[id] {
		t.Fatalf("after add project: bob lists it, or not as pending")
	}
	mustCLI(t, bob, "openstack", "image", "set", "--accept", id)
	var rows []map[string]any
	out = mustCLI(t, bob, "openstack", "image", "list", "--shared", "-f", "json")
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("openstack image list: %v\n%s", err, out)
	}
	found := false
	for _, r := range rows {
		found = found || r["ID"] == id
	}
	if !found {
		t.Fatalf("bob's openstack image list --shared lacks the image he accepted:\n%s", out)
	}
	_, errOut, err := runCLI(t, rita, "openstack", "image", "set", "--name", "by-reader", id)
	if err == nil || !strings.Contains(errOut, "403") {
		t.Fatalf("reader's openstack image set: %v\n%s", err, errOut)
	}
	mustCLI(t, alice, "openstack", "image", "remove", "project", id, e.projB)
	if e.listIDs(t, e.memberB, "member_status=all")[id] {
		t.Fatalf("bob lists the image after alice removed him")
	}
	e.expect(t, 204, e.memberA, "DELETE", "/v2/images/"+id, "")
}

// expiredToken: a token works until it expires, then gets 401, however
// recently Mosaic validated it (its cache never outlives the token).
func expiredToken(t *testing.T, e *env) {
	name := "shorty-" + randomHex(4)
	uid := e.ks.CreateUser(t, name, userPassword)
	e.ks.Grant(t, e.projA, uid, "member")
	tok, exp := e.ks.ShortLivedToken(t, uid, name, userPassword, e.projA, 10*time.Second)
	if r := e.call(t, tok, "GET", "/v2/images", ""); r.status != 200 && time.Now().Before(exp) {
		t.Fatalf("fresh short-lived token (expires in %v): %d %s", time.Until(exp), r.status, r.body)
	}
	deadline := exp.Add(5 * time.Second)
	for {
		r := e.call(t, tok, "GET", "/v2/images", "")
		if r.status == 401 {
			if time.Now().Before(exp) {
				t.Fatalf("token refused %v before it expired", time.Until(exp))
			}
			if r.header.Get("WWW-Authenticate") != e.challenge {
				t.Fatalf("expired token: WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
			return
		}
		if r.status != 200 {
			t.Fatalf("short-lived token: %d %s", r.status, r.body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still accepted %v after it expired", time.Since(exp))
		}
		time.Sleep(100 * time.Millisecond) // polling a deadline, not synchronising
	}
}

// revokedAfterUse: a token Mosaic has cached is refused once the cache
// entry lapses (--keystone-cache-ttl), as keystonemiddleware's cache.
func revokedAfterUse(t *testing.T, e *env) {
	tok := e.ks.Token(t, e.users["memberA"], userPassword, e.projA)
	e.expect(t, 200, tok, "GET", "/v2/images", "")
	e.ks.Revoke(t, tok)
	revokedAt := time.Now()
	for {
		r := e.call(t, tok, "GET", "/v2/images", "")
		if r.status == 401 {
			t.Logf("revoked token refused %v after revocation (cache TTL %v)", time.Since(revokedAt).Round(time.Millisecond), keystoneCacheTTL)
			return
		}
		if r.status != 200 {
			t.Fatalf("revoked token: %d %s", r.status, r.body)
		}
		if time.Since(revokedAt) > keystoneCacheTTL+5*time.Second {
			t.Fatalf("revoked token still accepted %v after revocation (cache TTL %v)", time.Since(revokedAt), keystoneCacheTTL)
		}
		time.Sleep(100 * time.Millisecond) // polling a deadline, not synchronising
	}
}
