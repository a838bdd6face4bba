package engine_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/raftmeta"
)

// newService returns a Service over a real single-node Raft store and a
// real Pebble chunk store.
func newService(t *testing.T, cfg engine.ServiceConfig) *engine.Service {
	t.Helper()
	dir := t.TempDir()
	chunks, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dir, "chunks")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chunks.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	meta, err := raftmeta.Open(raftmeta.Config{NodeID: "n1", Dir: filepath.Join(dir, "raft"), RaftAddr: addr, Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = meta.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := meta.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cfg.NodeID = "n1"
	svc, err := engine.NewService(cfg, meta, chunks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.WaitTasks)
	return svc
}

func as(project string, roles ...string) context.Context {
	return engine.WithCaller(context.Background(), &engine.Caller{ProjectID: project, UserID: project + "-user", Roles: roles})
}

func create(t *testing.T, svc *engine.Service, ctx context.Context, body string) *engine.Image {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatal(err)
	}
	img, err := svc.CreateImage(ctx, m)
	if err != nil {
		t.Fatalf("create %s: %v", body, err)
	}
	return img
}

// TestSharingAndPolicy exercises members and visibility with project
// callers (the noauth caller is admin and sees everything).
func TestSharingAndPolicy(t *testing.T) {
	svc := newService(t, engine.ServiceConfig{})
	owner, other := as("p1", "member"), as("p2", "member")
	priv := create(t, svc, owner, `{"name":"private","visibility":"private"}`)
	if priv.Owner != "p1" {
		t.Fatalf("owner %q, want the caller's project", priv.Owner)
	}
	if _, err := svc.ShowImage(other, priv.ID); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("other project sees a private image: %v", err)
	}
	if _, err := svc.AddMember(owner, priv.ID, "p2"); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("member on a private image: %v", err)
	}
	if _, err := svc.CreateImage(other, map[string]json.RawMessage{"owner": json.RawMessage(`"p1"`)}); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("create for another owner: %v", err)
	}
	shared := create(t, svc, owner, `{"name":"shared"}`)
	if _, err := svc.AddMember(other, shared.ID, "p3"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("non-owner adds a member to an invisible image: %v", err)
	}
	if _, err := svc.AddMember(owner, shared.ID, "p2"); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddMember(owner, shared.ID, "p2"); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("duplicate member: %v", err)
	}
	// Pending members see the image but do not list it by default.
	if _, err := svc.ShowImage(other, shared.ID); err != nil {
		t.Fatalf("member cannot see a shared image: %v", err)
	}
	list := func(ctx context.Context, query string) int {
		q, err := engine.ParseListQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		p, err := svc.ListImages(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Images)
	}
	if n := list(other, ""); n != 0 {
		t.Fatalf("pending member lists %d images", n)
	}
	if n := list(other, "member_status=pending"); n != 1 {
		t.Fatalf("member_status=pending lists %d images", n)
	}
	if _, err := svc.UpdateMember(owner, shared.ID, "p2", engine.MemberAccepted); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("owner accepted for the member: %v", err)
	}
	if _, err := svc.UpdateMember(other, shared.ID, "p2", engine.MemberAccepted); err != nil {
		t.Fatal(err)
	}
	if n := list(other, ""); n != 1 {
		t.Fatalf("accepted member lists %d images", n)
	}
	if n := list(owner, ""); n != 2 {
		t.Fatalf("owner lists %d images", n)
	}
	if members, err := svc.ListMembers(other, shared.ID); err != nil || len(members) != 1 {
		t.Fatalf("member's view of members: %v %v", members, err)
	}
	// Members may not change the image.
	if err := svc.AddTag(other, shared.ID, "x"); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("member tags the image: %v", err)
	}
	if err := svc.DeleteImage(other, shared.ID); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("member deletes the image: %v", err)
	}
	// Only admins publicize.
	if _, err := svc.CreateImage(owner, map[string]json.RawMessage{"visibility": json.RawMessage(`"public"`)}); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("member creates a public image: %v", err)
	}
	pub := create(t, svc, as("admin-project", "admin"), `{"name":"pub","visibility":"public"}`)
	if n := list(other, "visibility=public"); n != 1 {
		t.Fatalf("public list: %d", n)
	}
	if _, _, err := svc.ListTasks(owner, &engine.TaskListQuery{Limit: 25}); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("tasks API without admin: %v", err)
	}
	_ = pub
}

func TestStageImportAndWebDownload(t *testing.T) {
	data := bytes.Repeat([]byte("mosaic-import "), 100000)
	sum := md5.Sum(data)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "x", time.Time{}, bytes.NewReader(data))
	}))
	defer srv.Close()
	svc := newService(t, engine.ServiceConfig{Import: engine.ImportConfig{AllowedHosts: []string{"127.0.0.1"}, AnyPort: true}})
	ctx := engine.WithCaller(context.Background(), engine.NoAuthCaller())
	wait := func(id string, want engine.Status) *engine.Image {
		t.Helper()
		svc.WaitTasks()
		img, err := svc.ShowImage(ctx, id)
		if err != nil || img.Status != want {
			t.Fatalf("image %s: %+v %v, want %s", id, img, err, want)
		}
		return img
	}

	img := create(t, svc, ctx, `{"name":"staged","disk_format":"raw","container_format":"bare"}`)
	if err := svc.Stage(ctx, img.ID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if err := svc.Stage(ctx, img.ID, bytes.NewReader(data)); !errors.Is(err, engine.ErrConflict) {
		t.Fatalf("second stage: %v", err)
	}
	req := &engine.ImportRequest{}
	req.Method.Name = engine.ImportGlanceDirect
	if _, err := svc.Import(ctx, img.ID, req, "req-1"); err != nil {
		t.Fatal(err)
	}
	got := wait(img.ID, engine.StatusActive)
	if got.Checksum != hex.EncodeToString(sum[:]) || *got.Size != int64(len(data)) || got.Properties["os_glance_import_task"] != "" {
		t.Fatalf("after glance-direct: %+v", got)
	}
	tasks, err := svc.ImageTasks(ctx, img.ID)
	if err != nil || len(tasks) != 1 || tasks[0].Status != engine.TaskSuccess {
		t.Fatalf("image tasks: %+v %v", tasks, err)
	}

	web := create(t, svc, ctx, `{"name":"web","disk_format":"raw","container_format":"bare"}`)
	req.Method.Name, req.Method.URI = engine.ImportWebDownload, srv.URL+"/x"
	if _, err := svc.Import(ctx, web.ID, req, "req-2"); err != nil {
		t.Fatal(err)
	}
	if got := wait(web.ID, engine.StatusActive); got.Checksum != hex.EncodeToString(sum[:]) {
		t.Fatalf("after web-download: %+v", got)
	}

	// A failing download returns the image to queued and fails the task.
	bad := create(t, svc, ctx, `{"name":"bad","disk_format":"raw","container_format":"bare"}`)
	req.Method.URI = "http://127.0.0.1:1/nothing"
	if _, err := svc.Import(ctx, bad.ID, req, "req-3"); err != nil {
		t.Fatal(err)
	}
	got = wait(bad.ID, engine.StatusQueued)
	if got.Properties["os_glance_failed_import"] != engine.StoreID {
		t.Fatalf("failed import: %+v", got)
	}
	tasks, _ = svc.ImageTasks(ctx, bad.ID)
	if len(tasks) != 1 || tasks[0].Status != engine.TaskFailure || tasks[0].Message == "" {
		t.Fatalf("failed task: %+v", tasks)
	}

	// Filters: a default service refuses loopback and odd ports.
	strict := newService(t, engine.ServiceConfig{})
	img2 := create(t, strict, ctx, `{"name":"strict","disk_format":"raw","container_format":"bare"}`)
	for _, uri := range []string{"", "file:///etc/passwd", "ftp://example.com/x", "http://example.com:8080/x"} {
		req.Method.URI = uri
		if _, err := strict.Import(ctx, img2.ID, req, ""); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("web-download %q: %v, want 400", uri, err)
		}
	}
	req.Method.URI = "http://127.0.0.1/x" // allowed by name and port, refused at connect time
	if _, err := strict.Import(ctx, img2.ID, req, ""); err != nil {
		t.Fatal(err)
	}
	strict.WaitTasks()
	if got, _ := strict.ShowImage(ctx, img2.ID); got.Status != engine.StatusQueued {
		t.Fatalf("loopback download: status %s", got.Status)
	}
}

// TestListScopeAndRoles checks Glance's listing rules for a project that
// is not the owner (own ∪ public ∪ shared-and-accepted ∪ own community;
// others' community only on request), a reader that may not write, and the
// admin-only changes (owner, publicize).
func TestListScopeAndRoles(t *testing.T) {
	svc := newService(t, engine.ServiceConfig{})
	a, b := as("pA", "member", "reader"), as("pB", "member", "reader")
	readerA := as("pA", "reader")
	admin := as("pAdmin", "admin", "member", "reader")
	priv := create(t, svc, a, `{"name":"a-private","visibility":"private"}`)
	shared := create(t, svc, a, `{"name":"a-shared"}`)
	comm := create(t, svc, a, `{"name":"a-community","visibility":"community"}`)
	ownComm := create(t, svc, b, `{"name":"b-community","visibility":"community"}`)
	pub := create(t, svc, admin, `{"name":"public","visibility":"public"}`)
	names := func(ctx context.Context, query string) map[string]bool {
		t.Helper()
		q, err := engine.ParseListQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		p, err := svc.ListImages(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, img := range p.Images {
			out[*img.Name] = true
		}
		return out
	}
	expect := func(ctx context.Context, query string, want ...string) {
		t.Helper()
		got := names(ctx, query)
		if len(got) != len(want) {
			t.Fatalf("list %q: %v, want %v", query, got, want)
		}
		for _, w := range want {
			if !got[w] {
				t.Fatalf("list %q: %v, want %v", query, got, want)
			}
		}
	}
	expect(b, "", "b-community", "public")
	expect(b, "visibility=community", "a-community", "b-community")
	expect(a, "", "a-private", "a-shared", "a-community", "public")
	if _, err := svc.AddMember(a, shared.ID, "pB"); err != nil {
		t.Fatal(err)
	}
	expect(b, "", "b-community", "public")
	expect(b, "member_status=pending", "a-shared", "b-community", "public")
	if _, err := svc.UpdateMember(b, shared.ID, "pB", engine.MemberAccepted); err != nil {
		t.Fatal(err)
	}
	expect(b, "", "a-shared", "b-community", "public")
	if _, err := svc.UpdateMember(b, shared.ID, "pB", engine.MemberRejected); err != nil {
		t.Fatal(err)
	}
	expect(b, "", "b-community", "public")
	expect(b, "member_status=rejected", "a-shared", "b-community", "public")
	expect(b, "visibility=shared&member_status=all", "a-shared")
	// A rejected member still sees the image itself, as Glance's show.
	if _, err := svc.ShowImage(b, shared.ID); err != nil {
		t.Fatalf("rejected member: %v", err)
	}
	if _, err := svc.ShowImage(b, priv.ID); !errors.Is(err, engine.ErrNotFound) || !bytes.Contains([]byte(err.Error()), []byte(priv.ID)) ||
		bytes.Contains([]byte(err.Error()), []byte("a-private")) {
		t.Fatalf("private image shown to another project: %v", err)
	}

	// The reader reads but never writes.
	expect(readerA, "", "a-private", "a-shared", "a-community", "public")
	if _, _, err := svc.OpenData(readerA, priv.ID); err != nil && err != engine.ErrNoData {
		t.Fatalf("reader download: %v", err)
	}
	if _, err := svc.CreateImage(readerA, map[string]json.RawMessage{}); !errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("reader creates: %v", err)
	}
	for name, err := range map[string]error{
		"tag":        svc.AddTag(readerA, priv.ID, "x"),
		"delete":     svc.DeleteImage(readerA, priv.ID),
		"deactivate": svc.Deactivate(readerA, priv.ID),
		"member":     func() error { _, err := svc.AddMember(readerA, shared.ID, "pC"); return err }(),
		"upload":     func() error { _, err := svc.UploadData(readerA, priv.ID, bytes.NewReader([]byte("x"))); return err }(),
		"patch": func() error {
			_, err := svc.PatchImage(readerA, priv.ID, mustPatch(t, `[{"op":"replace","path":"/name","value":"x"}]`))
			return err
		}(),
		"communitize": func() error {
			_, err := svc.PatchImage(readerA, priv.ID, mustPatch(t, `[{"op":"replace","path":"/visibility","value":"community"}]`))
			return err
		}(),
	} {
		if !errors.Is(err, engine.ErrForbidden) {
			t.Errorf("reader %s: %v, want forbidden", name, err)
		}
	}

	// Owner changes and publicizing are the admin's.
	for _, patch := range []string{
		`[{"op":"replace","path":"/owner","value":"pB"}]`,
		`[{"op":"add","path":"/owner","value":"pB"}]`,
		`[{"op":"replace","path":"/visibility","value":"public"}]`,
	} {
		if _, err := svc.PatchImage(a, comm.ID, mustPatch(t, patch)); !errors.Is(err, engine.ErrForbidden) {
			t.Errorf("member %s: %v, want forbidden", patch, err)
		}
	}
	got, err := svc.PatchImage(admin, comm.ID, mustPatch(t, `[{"op":"replace","path":"/owner","value":"pB"},{"op":"replace","path":"/visibility","value":"public"}]`))
	if err != nil || got.Owner != "pB" || got.Visibility != engine.VisibilityPublic {
		t.Fatalf("admin owner+publicize: %+v %v", got, err)
	}
	// Protected images cannot be deleted, even by an admin.
	if _, err := svc.PatchImage(a, priv.ID, mustPatch(t, `[{"op":"replace","path":"/protected","value":true}]`)); err != nil {
		t.Fatal(err)
	}
	for _, ctx := range []context.Context{a, admin} {
		if err := svc.DeleteImage(ctx, priv.ID); !errors.Is(err, engine.ErrForbidden) {
			t.Fatalf("protected delete: %v", err)
		}
	}
	_, _ = ownComm, pub
}

func mustPatch(t *testing.T, body string) []engine.PatchOp {
	t.Helper()
	ops, err := engine.ParsePatch(engine.PatchMediaType, []byte(body))
	if err != nil {
		t.Fatalf("patch %s: %v", body, err)
	}
	return ops
}
