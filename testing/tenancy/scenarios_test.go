package tenancy

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestTenancyTokenMode runs the scenarios with a token file, no Keystone.
func TestTenancyTokenMode(t *testing.T) {
	t.Parallel()
	e := newTokenEnv(t)
	runScenarios(t, e)
	t.Run("glance CLI", func(t *testing.T) { glanceCLI(t, e) })
}

// TestTenancyKeystoneMode runs the same scenarios against the real
// Keystone, then what only Keystone tokens do: expire, be revoked after
// use, and come from the openstack CLI's own password login.
func TestTenancyKeystoneMode(t *testing.T) {
	t.Parallel()
	e := newKeystoneEnv(t)
	runScenarios(t, e)
	// These wait on clocks and on slow clients: in parallel.
	t.Run("tokens and clients", func(t *testing.T) {
		for name, f := range map[string]func(*testing.T, *env){
			"openstack CLI": openstackCLI,
			"expired token": expiredToken, "revoked after use": revokedAfterUse,
		} {
			t.Run(name, func(t *testing.T) { t.Parallel(); f(t, e) })
		}
	})
}

// images are the images of a scenario run, by what they are.
type images struct {
	private, shared, community, queued string
	// names of A's images that B must never learn from an answer.
	secretNames []string
	data        []byte
}

func runScenarios(t *testing.T, e *env) {
	var imgs images
	t.Run("authentication", func(t *testing.T) { authentication(t, e) })
	t.Run("project A's images", func(t *testing.T) { imgs = createImages(t, e) })
	if imgs.private == "" {
		t.FailNow()
	}
	t.Run("B cannot see A's private image", func(t *testing.T) { privateIsInvisible(t, e, imgs) })
	t.Run("community images", func(t *testing.T) { communityImages(t, e, imgs) })
	t.Run("sharing with members", func(t *testing.T) { sharing(t, e, imgs) })
	t.Run("the reader cannot write", func(t *testing.T) { readerCannotWrite(t, e, imgs) })
	t.Run("only admin publicizes and changes owners", func(t *testing.T) { adminOnly(t, e, imgs) })
	t.Run("deactivated and protected images", func(t *testing.T) { deactivatedAndProtected(t, e, imgs) })
	t.Run("secrets are per project", func(t *testing.T) { secrets(t, e) })
}

func authentication(t *testing.T, e *env) {
	for _, path := range []string{"/", "/versions"} {
		if r := e.call(t, "", "GET", path, ""); r.status != 200 && r.status != 300 {
			t.Fatalf("GET %s without a token: %d", path, r.status)
		}
	}
	check := func(what, tok string) {
		t.Helper()
		for _, req := range [][2]string{{"GET", "/v2/images"}, {"GET", "/v2/schemas/image"}, {"POST", "/v2/images"}, {"GET", "/v1/secrets"}} {
			body := ""
			if req[0] == "POST" {
				body = `{"name":"must-not-exist"}`
			}
			r := e.call(t, tok, req[0], req[1], body)
			if r.status != 401 || !strings.Contains(r.body, "requires authentication") {
				t.Fatalf("%s token, %s %s: %d %s, want 401", what, req[0], req[1], r.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != e.challenge {
				t.Fatalf("%s token: WWW-Authenticate %q, want %q", what, got, e.challenge)
			}
		}
	}
	check("no", "")
	for what, tok := range e.refused {
		check(what, tok)
	}
	if ids := e.listIDs(t, e.admin, "visibility=all&name=must-not-exist"); len(ids) != 0 {
		t.Fatalf("an unauthenticated create left an image")
	}
	for _, tok := range []string{e.memberA, e.memberB, e.readerA, e.admin} {
		e.expect(t, 200, tok, "GET", "/v2/images", "")
	}
}

func createImages(t *testing.T, e *env) images {
	tag := randomHex(6)
	imgs := images{data: bytes.Repeat([]byte("tenancy-"+tag), 8192)}
	mk := func(name, visibility string) string {
		t.Helper()
		body := fmt.Sprintf(`{"name":%q,"disk_format":"raw","container_format":"bare"`, name)
		if visibility != "" {
			body += fmt.Sprintf(`,"visibility":%q`, visibility)
		}
		r := e.expect(t, 201, e.memberA, "POST", "/v2/images", body+"}")
		if field(t, r.body, "owner") != e.projA {
			t.Fatalf("image owned by %v, want the token's project %s", field(t, r.body, "owner"), e.projA)
		}
		return field(t, r.body, "id").(string)
	}
	imgs.private = mk("a-private-"+tag, "private")
	imgs.shared = mk("a-shared-"+tag, "")
	imgs.community = mk("a-community-"+tag, "community")
	imgs.queued = mk("a-queued-"+tag, "private")
	imgs.secretNames = []string{"a-private-" + tag, "a-shared-" + tag, "a-queued-" + tag}
	if v := field(t, e.expect(t, 200, e.memberA, "GET", "/v2/images/"+imgs.shared, "").body, "visibility"); v != "shared" {
		t.Fatalf("default visibility %v, want shared", v)
	}
	for _, id := range []string{imgs.private, imgs.shared, imgs.community} {
		e.upload(t, e.memberA, id, imgs.data)
	}
	return imgs
}

// noLeak fails if an answer to B names one of A's images it may not see.
func noLeak(t *testing.T, imgs images, r response, allowedIDs ...string) {
	t.Helper()
	for _, n := range imgs.secretNames {
		if strings.Contains(r.body, n) {
			t.Fatalf("answer reveals image name %s: %s", n, r.body)
		}
	}
	for _, id := range []string{imgs.private, imgs.shared, imgs.queued} {
		if strings.Contains(r.body, id) && !contains(allowedIDs, id) {
			t.Fatalf("answer reveals image ID %s: %s", id, r.body)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func privateIsInvisible(t *testing.T, e *env, imgs images) {
	p := imgs.private
	for _, req := range []struct{ method, path, body string }{
		{"GET", "/v2/images/" + p, ""},
		{"GET", "/v2/images/" + p + "/file", ""},
		{"GET", "/v2/images/" + p + "/members", ""},
		{"GET", "/v2/images/" + p + "/members/" + e.projB, ""},
		{"GET", "/v2/images/" + p + "/tasks", ""},
		{"PATCH", "/v2/images/" + p, `[{"op":"replace","path":"/name","value":"pwned"}]`},
		{"DELETE", "/v2/images/" + p, ""},
		{"PUT", "/v2/images/" + p + "/tags/x", ""},
		{"POST", "/v2/images/" + p + "/members", `{"member":"` + e.projB + `"}`},
		{"PUT", "/v2/images/" + p + "/members/" + e.projB, `{"status":"accepted"}`},
		{"POST", "/v2/images/" + p + "/actions/deactivate", ""},
		{"PUT", "/v2/images/" + imgs.queued + "/file", "x"},
		{"PUT", "/v2/images/" + imgs.queued + "/stage", "x"},
		{"POST", "/v2/images/" + imgs.queued + "/import", `{"method":{"name":"glance-direct"}}`},
	} {
		var headers []string
		switch {
		case req.method == "PATCH":
			headers = []string{"Content-Type", "application/openstack-images-v2.1-json-patch"}
		case strings.HasSuffix(req.path, "/file") || strings.HasSuffix(req.path, "/stage"):
			headers = []string{"Content-Type", "application/octet-stream"}
		}
		for _, tok := range []string{e.memberB, ""} {
			r := e.call(t, tok, req.method, req.path, req.body, headers...)
			want := 404
			if tok == "" {
				want = 401
			}
			if r.status != want {
				t.Fatalf("%s %s as %s: %d %s, want %d", req.method, req.path, e.who(tok), r.status, r.body, want)
			}
			// The 404 names only what was asked for (the path's ID).
			asked := strings.Split(strings.TrimPrefix(req.path, "/v2/images/"), "/")[0]
			noLeak(t, imgs, r, asked)
		}
	}
	ids := e.listIDs(t, e.memberB, "")
	if ids[imgs.private] || ids[imgs.shared] || ids[imgs.community] || ids[imgs.queued] {
		t.Fatalf("B's default list shows A's images: %v", ids)
	}
	for _, q := range []string{"visibility=all", "visibility=private", "visibility=shared&member_status=all", "member_status=all"} {
		r := e.expect(t, 200, e.memberB, "GET", "/v2/images?"+q, "")
		noLeak(t, imgs, r)
	}
	// A marker naming an invisible image gets the same answer as a missing one.
	r := e.call(t, e.memberB, "GET", "/v2/images?marker="+p, "")
	if r.status != 400 {
		t.Fatalf("invisible marker: %d %s", r.status, r.body)
	}
	noLeak(t, imgs, r, p)
	// The owner and the admin see it.
	e.expect(t, 200, e.memberA, "GET", "/v2/images/"+p, "")
	e.expect(t, 200, e.admin, "GET", "/v2/images/"+p, "")
	if !e.listIDs(t, e.admin, "visibility=all")[p] {
		t.Fatalf("admin's visibility=all list lacks A's private image")
	}
}

func communityImages(t *testing.T, e *env, imgs images) {
	c := imgs.community
	if e.listIDs(t, e.memberB, "")[c] {
		t.Fatalf("another project's community image in B's default list")
	}
	if !e.listIDs(t, e.memberB, "visibility=community")[c] {
		t.Fatalf("community image missing from B's visibility=community list")
	}
	if !e.listIDs(t, e.memberA, "")[c] {
		t.Fatalf("A's own community image missing from A's default list")
	}
	e.expect(t, 200, e.memberB, "GET", "/v2/images/"+c, "")
	if r := e.expect(t, 200, e.memberB, "GET", "/v2/images/"+c+"/file", ""); r.body != string(imgs.data) {
		t.Fatalf("community download: %d bytes", len(r.body))
	}
	// Seeing is not owning.
	e.expect(t, 403, e.memberB, "PATCH", "/v2/images/"+c, `[{"op":"replace","path":"/name","value":"x"}]`,
		"Content-Type", "application/openstack-images-v2.1-json-patch")
	e.expect(t, 403, e.memberB, "DELETE", "/v2/images/"+c, "")
	e.expect(t, 403, e.memberB, "POST", "/v2/images/"+c+"/actions/deactivate", "")
	// Community images have no members.
	e.expect(t, 403, e.memberA, "POST", "/v2/images/"+c+"/members", `{"member":"`+e.projB+`"}`)
}

func sharing(t *testing.T, e *env, imgs images) {
	s := imgs.shared
	inList := func(q string) bool { t.Helper(); return e.listIDs(t, e.memberB, q)[s] }
	if inList("") {
		t.Fatalf("shared image listed for B before A added B")
	}
	e.expect(t, 404, e.memberB, "GET", "/v2/images/"+s, "")
	// Private images have no members; shared ones do.
	e.expect(t, 403, e.memberA, "POST", "/v2/images/"+imgs.private+"/members", `{"member":"`+e.projB+`"}`)
	r := e.expect(t, 200, e.memberA, "POST", "/v2/images/"+s+"/members", `{"member":"`+e.projB+`"}`)
	if field(t, r.body, "status") != "pending" || field(t, r.body, "member_id") != e.projB {
		t.Fatalf("new member: %s", r.body)
	}
	e.expect(t, 409, e.memberA, "POST", "/v2/images/"+s+"/members", `{"member":"`+e.projB+`"}`)
	if inList("") {
		t.Fatalf("shared image listed for B while pending")
	}
	if !inList("member_status=pending") {
		t.Fatalf("pending shared image missing from member_status=pending")
	}
	e.expect(t, 200, e.memberB, "GET", "/v2/images/"+s, "")
	// Only the member answers an invitation; the owner cannot.
	e.expect(t, 403, e.memberA, "PUT", "/v2/images/"+s+"/members/"+e.projB, `{"status":"accepted"}`)
	e.expect(t, 400, e.memberB, "PUT", "/v2/images/"+s+"/members/"+e.projB, `{"status":"maybe"}`)
	e.expect(t, 200, e.memberB, "PUT", "/v2/images/"+s+"/members/"+e.projB, `{"status":"accepted"}`)
	if !inList("") {
		t.Fatalf("accepted shared image missing from B's list")
	}
	if r := e.expect(t, 200, e.memberB, "GET", "/v2/images/"+s+"/file", ""); r.body != string(imgs.data) {
		t.Fatalf("member download: %d bytes", len(r.body))
	}
	// A member sees its own membership only, and cannot change the image.
	r = e.expect(t, 200, e.memberB, "GET", "/v2/images/"+s+"/members", "")
	var ms struct {
		Members []struct {
			MemberID string `json:"member_id"`
		}
	}
	if json.Unmarshal([]byte(r.body), &ms) != nil || len(ms.Members) != 1 || ms.Members[0].MemberID != e.projB {
		t.Fatalf("member's view of members: %s", r.body)
	}
	e.expect(t, 403, e.memberB, "POST", "/v2/images/"+s+"/members", `{"member":"someone-else"}`)
	e.expect(t, 403, e.memberB, "DELETE", "/v2/images/"+s+"/members/"+e.projB, "")
	e.expect(t, 403, e.memberB, "PATCH", "/v2/images/"+s, `[{"op":"replace","path":"/name","value":"x"}]`,
		"Content-Type", "application/openstack-images-v2.1-json-patch")
	e.expect(t, 403, e.memberB, "DELETE", "/v2/images/"+s, "")
	e.expect(t, 404, e.memberB, "GET", "/v2/images/"+s+"/members/someone-else", "")
	// Rejected: gone from the list, but still a member.
	e.expect(t, 200, e.memberB, "PUT", "/v2/images/"+s+"/members/"+e.projB, `{"status":"rejected"}`)
	if inList("") {
		t.Fatalf("rejected shared image still in B's list")
	}
	if !inList("member_status=rejected") || !inList("member_status=all") {
		t.Fatalf("rejected shared image missing from member_status=rejected/all")
	}
	e.expect(t, 200, e.memberB, "PUT", "/v2/images/"+s+"/members/"+e.projB, `{"status":"accepted"}`)
	if !inList("visibility=shared") {
		t.Fatalf("re-accepted shared image missing from visibility=shared")
	}
	// The owner removes the member: the image is invisible again.
	e.expect(t, 204, e.memberA, "DELETE", "/v2/images/"+s+"/members/"+e.projB, "")
	e.expect(t, 404, e.memberB, "GET", "/v2/images/"+s, "")
	if inList("member_status=all") {
		t.Fatalf("image listed for B after A removed B")
	}
	// Share again for the later scenarios.
	e.expect(t, 200, e.memberA, "POST", "/v2/images/"+s+"/members", `{"member":"`+e.projB+`"}`)
	e.expect(t, 200, e.memberB, "PUT", "/v2/images/"+s+"/members/"+e.projB, `{"status":"accepted"}`)
}

func readerCannotWrite(t *testing.T, e *env, imgs images) {
	r := e.readerA
	ids := e.listIDs(t, r, "")
	if !ids[imgs.private] || !ids[imgs.shared] || !ids[imgs.community] {
		t.Fatalf("reader's list lacks A's images: %v", ids)
	}
	e.expect(t, 200, r, "GET", "/v2/images/"+imgs.private, "")
	if got := e.expect(t, 200, r, "GET", "/v2/images/"+imgs.private+"/file", ""); got.body != string(imgs.data) {
		t.Fatalf("reader download: %d bytes", len(got.body))
	}
	e.expect(t, 200, r, "GET", "/v2/images/"+imgs.shared+"/members", "")
	patch := []string{"Content-Type", "application/openstack-images-v2.1-json-patch"}
	octet := []string{"Content-Type", "application/octet-stream"}
	for _, req := range []struct {
		method, path, body string
		headers            []string
	}{
		{"POST", "/v2/images", `{"name":"reader-made"}`, nil},
		{"PATCH", "/v2/images/" + imgs.private, `[{"op":"replace","path":"/name","value":"x"}]`, patch},
		{"DELETE", "/v2/images/" + imgs.private, "", nil},
		{"PUT", "/v2/images/" + imgs.private + "/tags/t", "", nil},
		{"DELETE", "/v2/images/" + imgs.private + "/tags/t", "", nil},
		{"PUT", "/v2/images/" + imgs.queued + "/file", "data", octet},
		{"PUT", "/v2/images/" + imgs.queued + "/stage", "data", octet},
		{"POST", "/v2/images/" + imgs.queued + "/import", `{"method":{"name":"web-download","uri":"http://example.com/x"}}`, nil},
		{"POST", "/v2/images/" + imgs.private + "/actions/deactivate", "", nil},
		{"POST", "/v2/images/" + imgs.private + "/actions/reactivate", "", nil},
		{"POST", "/v2/images/" + imgs.shared + "/members", `{"member":"someone"}`, nil},
		{"DELETE", "/v2/images/" + imgs.shared + "/members/" + e.projB, "", nil},
	} {
		got := e.call(t, r, req.method, req.path, req.body, req.headers...)
		if got.status != 403 {
			t.Fatalf("reader %s %s: %d %s, want 403", req.method, req.path, got.status, got.body)
		}
	}
	if ids := e.listIDs(t, e.admin, "visibility=all&name=reader-made"); len(ids) != 0 {
		t.Fatalf("the reader's refused create left an image")
	}
	if n := field(t, e.expect(t, 200, e.memberA, "GET", "/v2/images/"+imgs.private, "").body, "name"); n != imgs.secretNames[0] {
		t.Fatalf("the reader's refused PATCH changed the name to %v", n)
	}
}

func adminOnly(t *testing.T, e *env, imgs images) {
	patch := []string{"Content-Type", "application/openstack-images-v2.1-json-patch"}
	r := e.expect(t, 403, e.memberA, "POST", "/v2/images", `{"name":"a-public","visibility":"public"}`)
	if !strings.Contains(r.body, "publicize_image") {
		t.Fatalf("member's public create: %s", r.body)
	}
	e.expect(t, 403, e.memberA, "PATCH", "/v2/images/"+imgs.community, `[{"op":"replace","path":"/visibility","value":"public"}]`, patch...)
	e.expect(t, 403, e.memberA, "PATCH", "/v2/images/"+imgs.community, `[{"op":"replace","path":"/owner","value":"`+e.projB+`"}]`, patch...)
	e.expect(t, 403, e.memberA, "POST", "/v2/images", `{"name":"a-for-b","owner":"`+e.projB+`"}`)
	r = e.expect(t, 201, e.admin, "POST", "/v2/images", `{"name":"admin-public","visibility":"public"}`)
	pub := field(t, r.body, "id").(string)
	for _, tok := range []string{e.memberA, e.memberB, e.readerA} {
		if !e.listIDs(t, tok, "")[pub] {
			t.Fatalf("%s does not list the public image", e.who(tok))
		}
	}
	e.expect(t, 403, e.memberB, "DELETE", "/v2/images/"+pub, "")
	e.expect(t, 200, e.admin, "PATCH", "/v2/images/"+imgs.community, `[{"op":"replace","path":"/visibility","value":"public"}]`, patch...)
	if !e.listIDs(t, e.memberB, "")[imgs.community] {
		t.Fatalf("the publicized image is not in B's default list")
	}
	// The admin gives A's community image to B: now B owns it and A does not.
	r = e.expect(t, 200, e.admin, "PATCH", "/v2/images/"+imgs.community, `[{"op":"replace","path":"/owner","value":"`+e.projB+`"}]`, patch...)
	if field(t, r.body, "owner") != e.projB {
		t.Fatalf("owner after admin change: %s", r.body)
	}
	e.expect(t, 200, e.memberB, "PATCH", "/v2/images/"+imgs.community, `[{"op":"replace","path":"/name","value":"now-bs"}]`, patch...)
	e.expect(t, 403, e.memberA, "PATCH", "/v2/images/"+imgs.community, `[{"op":"replace","path":"/name","value":"still-as"}]`, patch...)
	// The tasks API and store details are the admin's.
	for _, path := range []string{"/v2/tasks", "/v2/info/stores/detail"} {
		e.expect(t, 403, e.memberA, "GET", path, "")
		e.expect(t, 200, e.admin, "GET", path, "")
	}
	if field(t, e.expect(t, 200, e.memberA, "GET", "/v2/info/usage", "").body, "mosaic") != nil {
		t.Fatalf("a member sees the store-wide usage")
	}
	if field(t, e.expect(t, 200, e.admin, "GET", "/v2/info/usage", "").body, "mosaic") == nil {
		t.Fatalf("the admin does not see the store-wide usage")
	}
	// The node's own operations (GC, the per-image report naming every
	// project's images) answer only an admin, loopback or not.
	for tok, want := range map[string]int{"": 401, "not-a-token": 401, e.memberA: 403, e.readerA: 403, e.admin: 200} {
		r := e.expect(t, want, tok, "GET", "/mosaic/v1/usage", "")
		if want != 200 {
			noLeak(t, imgs, r)
		}
	}
	e.expect(t, 403, e.memberB, "POST", "/mosaic/v1/gc", "")
	out, errOut, err := harness.RunErr(context.Background(), []string{"OS_AUTH_TOKEN=" + e.admin}, harness.Binary(t), "usage", "--url", e.node.URL())
	if err != nil || !strings.Contains(out, imgs.secretNames[0]) {
		t.Fatalf("mosaic usage with an admin's token: %v\n%s\n%s", err, out, errOut)
	}
	if _, _, err := harness.RunErr(context.Background(), []string{"OS_AUTH_TOKEN=" + e.memberA}, harness.Binary(t), "usage", "--url", e.node.URL()); err == nil {
		t.Fatalf("mosaic usage with a member's token succeeded")
	}
}

func deactivatedAndProtected(t *testing.T, e *env, imgs images) {
	s := imgs.shared // A's, shared with B (accepted)
	e.expect(t, 403, e.memberB, "POST", "/v2/images/"+s+"/actions/deactivate", "")
	e.expect(t, 204, e.memberA, "POST", "/v2/images/"+s+"/actions/deactivate", "")
	for _, tok := range []string{e.memberA, e.memberB, e.readerA} {
		r := e.expect(t, 403, tok, "GET", "/v2/images/"+s+"/file", "")
		if !strings.Contains(r.body, "deactivated") {
			t.Fatalf("deactivated download as %s: %s", e.who(tok), r.body)
		}
	}
	if r := e.expect(t, 200, e.admin, "GET", "/v2/images/"+s+"/file", ""); r.body != string(imgs.data) {
		t.Fatalf("admin's download of a deactivated image: %d bytes", len(r.body))
	}
	e.expect(t, 204, e.memberA, "POST", "/v2/images/"+s+"/actions/reactivate", "")
	e.expect(t, 200, e.memberB, "GET", "/v2/images/"+s+"/file", "")

	patch := []string{"Content-Type", "application/openstack-images-v2.1-json-patch"}
	e.expect(t, 200, e.memberA, "PATCH", "/v2/images/"+s, `[{"op":"replace","path":"/protected","value":true}]`, patch...)
	for _, tok := range []string{e.memberA, e.admin} {
		e.expect(t, 403, tok, "DELETE", "/v2/images/"+s, "")
	}
	e.expect(t, 200, e.memberA, "PATCH", "/v2/images/"+s, `[{"op":"replace","path":"/protected","value":false}]`, patch...)
	e.expect(t, 204, e.memberA, "DELETE", "/v2/images/"+s, "")
	e.expect(t, 404, e.memberB, "GET", "/v2/images/"+s, "")
}

// certificate returns a fresh self-signed certificate in PEM.
func certificate(t *testing.T) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "tenancy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func secrets(t *testing.T, e *env) {
	name := "cert-a-" + randomHex(6)
	body, _ := json.Marshal(map[string]any{"name": name, "secret_type": "certificate",
		"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64",
		"payload": base64.StdEncoding.EncodeToString(certificate(t))})
	e.expect(t, 403, e.readerA, "POST", "/v1/secrets", string(body))
	r := e.expect(t, 201, e.memberA, "POST", "/v1/secrets", string(body))
	ref, _ := field(t, r.body, "secret_ref").(string)
	id := ref[strings.LastIndex(ref, "/")+1:]
	e.expect(t, 200, e.readerA, "GET", "/v1/secrets/"+id, "")
	e.expect(t, 200, e.readerA, "GET", "/v1/secrets/"+id+"/payload", "")
	for _, path := range []string{"/v1/secrets/" + id, "/v1/secrets/" + id + "/payload"} {
		r := e.expect(t, 404, e.memberB, "GET", path, "")
		if strings.Contains(r.body, name) {
			t.Fatalf("B learns the secret's name: %s", r.body)
		}
	}
	e.expect(t, 404, e.memberB, "DELETE", "/v1/secrets/"+id, "")
	if r := e.expect(t, 200, e.memberB, "GET", "/v1/secrets", ""); strings.Contains(r.body, id) || strings.Contains(r.body, name) {
		t.Fatalf("B lists A's secret: %s", r.body)
	}
	if r := e.expect(t, 200, e.readerA, "GET", "/v1/secrets", ""); !strings.Contains(r.body, id) {
		t.Fatalf("A's reader does not list A's secret: %s", r.body)
	}
	e.expect(t, 403, e.readerA, "DELETE", "/v1/secrets/"+id, "")
	e.expect(t, 204, e.memberA, "DELETE", "/v1/secrets/"+id, "")
}
