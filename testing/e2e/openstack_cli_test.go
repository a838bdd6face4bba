package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestOpenStackCLI drives `openstack image ...` (python3-openstackclient)
// with authentication off, as against Glance's unauthenticated pipeline.
// `image add project` and `image remove project` are left out: the client
// resolves the project through Keystone before calling the image API, and
// there is no Keystone in noauth mode (the keystone auth mode covers them).
func TestOpenStackCLI(t *testing.T) {
	harness.RequireTool(t, "openstack", "python3-openstackclient")
	work := t.TempDir()
	node := harness.StartNode(t, harness.NodeOptions{})
	o := cli{t: t, env: []string{"OS_AUTH_TYPE=none", "OS_ENDPOINT=" + node.URL(), "HOME=" + t.TempDir()}, devNull: true}
	h := api{t: t, base: node.URL()}
	jsonOut := func(args ...string) map[string]any {
		t.Helper()
		var m map[string]any
		out := o.run("openstack", append(args, "-f", "json")...)
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("openstack %v: %v\n%s", args, err, out)
		}
		return m
	}
	listIDs := func(args ...string) []string {
		t.Helper()
		var rows []map[string]any
		out := o.run("openstack", append(append([]string{"image", "list"}, args...), "-f", "json")...)
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("openstack image list %v: %v\n%s", args, err, out)
		}
		var ids []string
		for _, r := range rows {
			ids = append(ids, r["ID"].(string))
		}
		return ids
	}
	// 3,000,000 bytes: not a multiple of any block or chunk size.
	a := writeFixture(t, work, "a.img", randomData(3000000, 21))

	img := jsonOut("image", "create", "--disk-format", "raw", "--container-format", "bare", "--file", a.path,
		"--property", "foo=bar", "--tag", "ta", "--min-ram", "32", "--shared", "osc-a")
	id := img["id"].(string)
	got := h.image(id)
	if got["status"] != "active" || got["checksum"] != a.md5 || got["foo"] != "bar" || got["min_ram"] != float64(32) {
		t.Fatalf("image create: %v", got)
	}
	small := writeFixture(t, work, "b.img", randomData(4096, 22))
	b := jsonOut("image", "create", "--disk-format", "qcow2", "--container-format", "bare", "--private", "--file", small.path, "osc-b")
	idB := b["id"].(string)

	// image set: name, property, tag, protection, deactivation.
	o.run("openstack", "image", "set", "--name", "osc-a2", "--property", "k=v", "--tag", "tb", "--protected", "--deactivate", id)
	got = h.image(id)
	if got["name"] != "osc-a2" || got["k"] != "v" || got["protected"] != true || got["status"] != "deactivated" ||
		!slices.Contains(got["tags"].([]any), any("tb")) {
		t.Fatalf("image set: %v", got)
	}
	o.run("openstack", "image", "set", "--activate", "--unprotected", id)
	if got = h.image(id); got["status"] != "active" || got["protected"] != false {
		t.Fatalf("image set --activate --unprotected: %v", got)
	}
	// image unset: tag and property.
	o.run("openstack", "image", "unset", "--tag", "ta", "--property", "foo", id)
	if got = h.image(id); got["foo"] != nil || slices.Contains(got["tags"].([]any), any("ta")) {
		t.Fatalf("image unset: %v", got)
	}

	show := jsonOut("image", "show", id)
	if show["name"] != "osc-a2" || show["checksum"] != a.md5 || show["size"] != float64(len(a.data)) {
		t.Fatalf("image show: %v", show)
	}

	// image list: filters, sorting, limits.
	if ids := listIDs("--property", "k=v"); !slices.Equal(ids, []string{id}) {
		t.Fatalf("image list --property: %v", ids)
	}
	if ids := listIDs("--tag", "tb", "--long"); !slices.Equal(ids, []string{id}) {
		t.Fatalf("image list --tag: %v", ids)
	}
	// --sort is applied by the client; --limit by the server (newest first).
	if ids := listIDs("--sort", "name:desc"); !slices.Equal(ids, []string{idB, id}) {
		t.Fatalf("image list --sort name:desc: %v", ids)
	}
	if ids := listIDs("--limit", "1"); !slices.Equal(ids, []string{idB}) {
		t.Fatalf("image list --limit 1: %v", ids)
	}
	if ids := listIDs("--private"); !slices.Equal(ids, []string{idB}) {
		t.Fatalf("image list --private: %v", ids)
	}

	// image save: the bytes come back.
	out := filepath.Join(work, "a.out")
	o.run("openstack", "image", "save", "--file", out, id)
	if data, _ := os.ReadFile(out); !bytes.Equal(data, a.data) {
		t.Fatal("image save returned different bytes")
	}

	// image member list on a shared image (empty).
	var members []any
	if err := json.Unmarshal([]byte(o.run("openstack", "image", "member", "list", id, "-f", "json")), &members); err != nil || len(members) != 0 {
		t.Fatalf("image member list: %v %v", members, err)
	}

	// Public images need the admin role, which noauth lacks (as Glance).
	o.fail("openstack", "image", "create", "--public", "osc-public")

	o.run("openstack", "image", "delete", id, idB)
	if ids := listIDs(); len(ids) != 0 {
		t.Fatalf("after image delete: %v", ids)
	}
}
