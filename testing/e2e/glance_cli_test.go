package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// cli runs a client command with stdin closed: glanceclient reads image
// data from any stdin that is not a terminal, so /dev/null would become an
// empty upload.
type cli struct {
	t   *testing.T
	env []string
	// devNull keeps stdin open on /dev/null (openstackclient crashes on a
	// closed stdin, and reads no data when given --file).
	devNull bool
}

func (c cli) args(name string, args []string) []string {
	script := `exec "$0" "$@" <&-`
	if c.devNull {
		script = `exec "$0" "$@" </dev/null`
	}
	return append([]string{"-c", script, name}, args...)
}

// run runs the command and fails the test if it fails.
func (c cli) run(name string, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return harness.Run(c.t, ctx, c.env, "sh", c.args(name, args)...)
}

// fail runs a command that must fail and returns its stderr.
func (c cli) fail(name string, args ...string) string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, errOut, err := harness.RunErr(ctx, c.env, "sh", c.args(name, args)...)
	if err == nil {
		c.t.Fatalf("%s %v succeeded, want a failure; output:\n%s", name, args, out)
	}
	return errOut
}

// table runs a glance command printing one object and parses it.
func (c cli) table(args ...string) map[string]string {
	c.t.Helper()
	out := c.run("glance", args...)
	m, err := harness.ParseGlanceTable(out)
	if err != nil {
		c.t.Fatalf("glance %v: %v\n%s", args, err, out)
	}
	return m
}

// api is a plain HTTP client for checks that need no CLI (cheaper).
type api struct {
	t    *testing.T
	base string
}

func (a api) image(id string) map[string]any {
	a.t.Helper()
	var m map[string]any
	a.getJSON("/v2/images/"+id, &m)
	return m
}

func (a api) getJSON(path string, v any) {
	a.t.Helper()
	resp, err := http.Get(a.base + path)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("GET %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		a.t.Fatalf("GET %s: %v", path, err)
	}
}

// waitStatus polls an image until it reaches status (imports are async).
func (a api) waitStatus(id, status string) map[string]any {
	a.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		img := a.image(id)
		if img["status"] == status {
			return img
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("image %s: status %v, want %s: %v", id, img["status"], status, img)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// serveFile serves data over HTTP on loopback for web-download imports.
func serveFile(t *testing.T, data []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "image.raw", time.Time{}, bytes.NewReader(data))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String() + "/image.raw"
}

func TestGlanceCLI(t *testing.T) {
	harness.RequireTool(t, "glance", "python3-glanceclient")
	work := t.TempDir()
	node := harness.StartNode(t, harness.NodeOptions{Extra: []string{"--import-allowed-hosts", "127.0.0.1"}})
	g := cli{t: t, env: glanceEnv(t, node)}
	h := api{t: t, base: node.URL()}
	a := writeFixture(t, work, "a.img", randomData(3<<20, 11))
	b := writeFixture(t, work, "b.img", randomData(1<<20, 12))
	c := writeFixture(t, work, "c.img", randomData(2<<20, 13))
	d := writeFixture(t, work, "d.img", randomData(1<<20+5, 14))

	// image-create with data, properties, tags and core attributes.
	img := g.table("image-create", "--name", "cli-a", "--disk-format", "raw", "--container-format", "bare",
		"--tags", "t1", "t2", "--property", "foo=bar", "--min-ram", "64", "--os-distro", "debian", "--file", a.path)
	id := img["id"]
	if img["status"] != "active" || img["checksum"] != a.md5 || img["os_hash_value"] != a.sha512 ||
		img["foo"] != "bar" || img["min_ram"] != "64" || img["os_distro"] != "debian" || !strings.Contains(img["tags"], "t2") {
		t.Fatalf("image-create: %v", img)
	}

	// image-update: rename, add and remove properties, core attributes.
	img = g.table("image-update", id, "--name", "cli-a2", "--property", "k2=v2", "--remove-property", "foo", "--min-disk", "3")
	if img["name"] != "cli-a2" || img["k2"] != "v2" || img["foo"] != "" || img["min_disk"] != "3" {
		t.Fatalf("image-update: %v", img)
	}

	// Tags.
	g.run("glance", "image-tag-update", id, "t3")
	g.run("glance", "image-tag-delete", id, "t1")
	if tags := h.image(id)["tags"].([]any); len(tags) != 2 || tags[0] != "t2" || tags[1] != "t3" {
		t.Fatalf("after tag update/delete: tags %v", tags)
	}
	if msg := g.fail("glance", "image-tag-delete", id, "nosuch"); !strings.Contains(msg, "404") {
		t.Fatalf("deleting a missing tag: %s", msg)
	}

	// image-show and image-download.
	show := g.table("image-show", id)
	if show["id"] != id || show["size"] != "3145728" || show["k2"] != "v2" {
		t.Fatalf("image-show: %v", show)
	}
	out := filepath.Join(work, "a.out")
	g.run("glance", "image-download", "--file", out, id)
	if got, _ := os.ReadFile(out); !bytes.Equal(got, a.data) {
		t.Fatal("image-download returned different bytes")
	}

	// image-create without data, then image-upload; deactivate/reactivate.
	img = g.table("image-create", "--name", "cli-b", "--disk-format", "qcow2", "--container-format", "bare", "--hidden", "True")
	idB := img["id"]
	if img["status"] != "queued" || img["os_hidden"] != "True" {
		t.Fatalf("image-create without data: %v", img)
	}
	g.run("glance", "image-upload", "--file", b.path, idB)
	if m := h.image(idB); m["status"] != "active" || m["checksum"] != b.md5 {
		t.Fatalf("after image-upload: %v", m)
	}
	g.run("glance", "image-deactivate", idB)
	if m := h.image(idB); m["status"] != "deactivated" {
		t.Fatalf("after image-deactivate: %v", m["status"])
	}
	g.run("glance", "image-reactivate", idB)
	if m := h.image(idB); m["status"] != "active" {
		t.Fatalf("after image-reactivate: %v", m["status"])
	}

	// Lists: filters, sorting, pagination, hidden images.
	list := g.run("glance", "image-list", "--tag", "t2", "--property-filter", "k2=v2", "--sort-key", "name", "--sort-dir", "asc", "--page-size", "1")
	if !strings.Contains(list, id) || strings.Contains(list, idB) {
		t.Fatalf("image-list with filters:\n%s", list)
	}
	list = g.run("glance", "image-list", "--hidden", "True", "--sort", "name:desc", "--limit", "5")
	if !strings.Contains(list, idB) || strings.Contains(list, id) {
		t.Fatalf("image-list --hidden:\n%s", list)
	}

	// Stage + import (glance-direct), then the image's tasks.
	img = g.table("image-create", "--name", "cli-c", "--disk-format", "raw", "--container-format", "bare")
	idC := img["id"]
	g.run("glance", "image-stage", "--file", c.path, idC)
	if m := h.image(idC); m["status"] != "uploading" || m["size"] != float64(len(c.data)) {
		t.Fatalf("after image-stage: %v", m)
	}
	g.run("glance", "image-import", "--import-method", "glance-direct", idC)
	if m := h.waitStatus(idC, "active"); m["checksum"] != c.md5 || m["os_glance_import_task"] != nil {
		t.Fatalf("after glance-direct import: %v", m)
	}
	tasks := g.run("glance", "image-tasks", idC)
	if !strings.Contains(tasks, "success") {
		t.Fatalf("image-tasks:\n%s", tasks)
	}

	// image-create-via-import: glance-direct and web-download.
	img = g.table("image-create-via-import", "--name", "cli-d", "--disk-format", "raw", "--container-format", "bare",
		"--import-method", "glance-direct", "--file", d.path)
	if m := h.waitStatus(img["id"], "active"); m["checksum"] != d.md5 {
		t.Fatalf("create-via-import glance-direct: %v", m)
	}
	img = g.table("image-create-via-import", "--name", "cli-e", "--disk-format", "raw", "--container-format", "bare",
		"--import-method", "web-download", "--uri", serveFile(t, b.data))
	if m := h.waitStatus(img["id"], "active"); m["checksum"] != b.md5 || m["size"] != float64(len(b.data)) {
		t.Fatalf("create-via-import web-download: %v", m)
	}

	// Discovery commands.
	if info := g.table("import-info"); !strings.Contains(info["import-methods"], "web-download") {
		t.Fatalf("import-info: %v", info)
	}
	if info := g.table("stores-info"); !strings.Contains(info["stores"], "mosaic") {
		t.Fatalf("stores-info: %v", info)
	}
	g.run("glance", "usage")

	// Members of a shared image.
	m := g.run("glance", "member-create", id, "proj-1")
	if !strings.Contains(m, "pending") {
		t.Fatalf("member-create:\n%s", m)
	}
	g.run("glance", "member-update", id, "proj-1", "accepted")
	if m := g.table("member-get", id, "proj-1"); m["status"] != "accepted" {
		t.Fatalf("member-get: %v", m)
	}
	if m := g.run("glance", "member-list", "--image-id", id); !strings.Contains(m, "proj-1") {
		t.Fatalf("member-list:\n%s", m)
	}
	g.run("glance", "member-delete", id, "proj-1")

	// Refusals Glance's unauthenticated context also gets.
	if msg := g.fail("glance", "task-list"); !strings.Contains(msg, "403") {
		t.Fatalf("task-list without admin role: %s", msg)
	}
	if msg := g.fail("glance", "image-create", "--name", "pub", "--visibility", "public"); !strings.Contains(msg, "403") {
		t.Fatalf("public image without admin role: %s", msg)
	}

	// Protected images resist deletion; image-delete removes the rest.
	g.run("glance", "image-update", idB, "--protected", "True")
	if msg := g.fail("glance", "image-delete", idB); !strings.Contains(msg, "not permitted") {
		t.Fatalf("deleting a protected image: %s", msg)
	}
	g.run("glance", "image-update", idB, "--protected", "False")
	g.run("glance", "image-delete", idB, idC)
	resp, err := http.Get(node.URL() + "/v2/images/" + idB)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("deleted image: GET %d", resp.StatusCode)
	}
}
