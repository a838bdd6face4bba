package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// glanceEnv points the glance CLI at a node (noauth: any token).
// HOME is a fresh directory because glanceclient caches schemas in
// ~/.glanceclient.
func glanceEnv(t *testing.T, p *harness.Process) []string {
	return []string{"OS_IMAGE_URL=" + p.URL(), "OS_AUTH_TOKEN=anything", "HOME=" + t.TempDir()}
}

type uploaded struct {
	id, path, md5, sha512 string
	data                  []byte
}

func writeFixture(t *testing.T, dir, name string, data []byte) uploaded {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m := md5.Sum(data)
	s := sha512.Sum512(data)
	return uploaded{path: p, md5: hex.EncodeToString(m[:]), sha512: hex.EncodeToString(s[:]), data: data}
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// mostlyZero is 64 MiB of zeros with a few random islands, like a fresh
// disk image.
func mostlyZero(n int) []byte {
	b := make([]byte, n)
	isl := randomData(1<<20, 7)
	for _, off := range []int{0, 9 << 20, 33<<20 + 12345, n - 1<<20} {
		copy(b[off:], isl)
	}
	return b
}

// glanceShow runs a glance command that prints one image as a
// Property/Value table and returns the properties (wrapped values joined).
func glanceShow(t *testing.T, env []string, args ...string) map[string]string {
	t.Helper()
	out := harness.Run(t, context.Background(), env, "glance", args...)
	m, err := harness.ParseGlanceTable(out)
	if err != nil {
		t.Fatalf("glance %v: %v\n%s", args, err, out)
	}
	return m
}

func usage(t *testing.T, p *harness.Process) map[string]any {
	t.Helper()
	resp, err := http.Get(p.URL() + "/v2/info/usage")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m["mosaic"].(map[string]any)["store"].(map[string]any)
}

func TestSkeletonEndToEnd(t *testing.T) {
	harness.RequireTool(t, "glance", "python3-glanceclient")
	harness.RequireTool(t, "fusermount3", "fuse3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is missing: the FUSE mount cannot be tested: %v", err)
	}
	work := t.TempDir()
	mnt := filepath.Join(work, "mnt")
	node := harness.StartNode(t, harness.NodeOptions{MountDir: mnt})
	env := glanceEnv(t, node)

	images := []uploaded{
		writeFixture(t, work, "random.img", randomData(64<<20, 1)),
		writeFixture(t, work, "zero.img", mostlyZero(64<<20)),
	}
	for i := range images {
		img := glanceShow(t, env, "image-create", "--name", filepath.Base(images[i].path),
			"--disk-format", "raw", "--container-format", "bare", "--file", images[i].path)
		if img["status"] != "active" {
			t.Fatalf("image %s: status %v after upload", images[i].path, img["status"])
		}
		images[i].id = img["id"]
		if img["checksum"] != images[i].md5 || img["os_hash_value"] != images[i].sha512 || img["os_hash_algo"] != "sha512" {
			t.Fatalf("image %s: checksum %v / %v %v, want md5 %s sha512 %s", images[i].id,
				img["checksum"], img["os_hash_algo"], img["os_hash_value"], images[i].md5, images[i].sha512)
		}
	}

	check := func(stage string) {
		t.Helper()
		for _, im := range images {
			show := glanceShow(t, env, "image-show", im.id)
			if show["status"] != "active" || show["checksum"] != im.md5 || show["size"] != strconv.Itoa(len(im.data)) {
				t.Fatalf("%s: image %s shows %v", stage, im.id, show)
			}
			out := filepath.Join(work, "download-"+im.id)
			harness.Run(t, context.Background(), env, "glance", "image-download", "--file", out, im.id)
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, im.data) {
				t.Fatalf("%s: download of %s differs from the upload", stage, im.id)
			}
			viaMount, err := os.ReadFile(filepath.Join(mnt, "images", im.id))
			if err != nil {
				t.Fatalf("%s: read %s through the mount: %v", stage, im.id, err)
			}
			if !bytes.Equal(viaMount, im.data) {
				t.Fatalf("%s: mount read of %s differs from the upload", stage, im.id)
			}
		}
		list := harness.Run(t, context.Background(), env, "glance", "image-list")
		for _, im := range images {
			if !strings.Contains(list, im.id) {
				t.Fatalf("%s: image-list lacks %s:\n%s", stage, im.id, list)
			}
		}
	}
	check("after upload")

	// Dedup: the same bytes again as a new image add almost nothing.
	before := usage(t, node)["stored_bytes"].(float64)
	dup := glanceShow(t, env, "image-create", "--name", "random-again", "--disk-format", "raw",
		"--container-format", "bare", "--file", images[0].path)
	if dup["status"] != "active" || dup["checksum"] != images[0].md5 {
		t.Fatalf("duplicate upload: %v", dup)
	}
	after := usage(t, node)["stored_bytes"].(float64)
	growth := (after - before) / before
	t.Logf("stored bytes %0.f -> %0.f after re-uploading 64 MiB (growth %.3f%%)", before, after, 100*growth)
	if growth >= 0.05 {
		t.Fatalf("re-uploading the same 64 MiB grew stored bytes by %.1f%% (limit 5%%)", 100*growth)
	}

	// A crash must lose nothing.
	node.Kill()
	node.Start()
	check("after kill -9 and restart")
}

func TestBadInputGetsGlanceAnswers(t *testing.T) {
	node := harness.StartNode(t, harness.NodeOptions{})
	do := func(method, path, ctype, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, node.URL()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("X-Openstack-Request-Id") == "" {
			t.Errorf("%s %s: no x-openstack-request-id", method, path)
		}
		return resp.StatusCode, string(b)
	}
	countImages := func() int {
		_, body := do("GET", "/v2/images", "", "")
		var m struct{ Images []any }
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatal(err)
		}
		return len(m.Images)
	}

	if st, body := do("POST", "/v2/images", "application/json", `{"name": "x",`); st != 400 || !strings.Contains(body, "Malformed JSON") {
		t.Fatalf("malformed JSON: %d %s", st, body)
	}
	if st, body := do("POST", "/v2/images", "application/json", `{"name":"x","disk_format":"floppy"}`); st != 400 {
		t.Fatalf("unknown disk_format: %d %s", st, body)
	}
	if n := countImages(); n != 0 {
		t.Fatalf("bad requests created %d images", n)
	}
	if st, _ := do("GET", "/v2/images/00000000-0000-0000-0000-000000000000", "", ""); st != 404 {
		t.Fatalf("unknown image: %d", st)
	}
	st, body := do("POST", "/v2/images", "application/json", `{"name":"ok","disk_format":"raw","container_format":"bare"}`)
	if st != 201 {
		t.Fatalf("create: %d %s", st, body)
	}
	var img map[string]any
	_ = json.Unmarshal([]byte(body), &img)
	id := img["id"].(string)
	if st, body := do("PUT", "/v2/images/"+id+"/file", "application/octet-stream", "hello"); st != 204 {
		t.Fatalf("upload: %d %s", st, body)
	}
	if st, body := do("PUT", "/v2/images/"+id+"/file", "application/octet-stream", "again"); st != 409 {
		t.Fatalf("upload to active image: %d %s", st, body)
	}
	_, body = do("GET", "/v2/images/"+id, "", "")
	_ = json.Unmarshal([]byte(body), &img)
	if img["status"] != "active" || img["size"] != float64(5) {
		t.Fatalf("rejected upload changed the image: %v", img)
	}
}
