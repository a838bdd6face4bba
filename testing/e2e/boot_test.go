package e2e

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// apiUpload creates an image through the Glance API and uploads a file.
func apiUpload(t *testing.T, node *harness.Process, name, diskFormat, path string) string {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"disk_format":%q,"container_format":"bare"}`, name, diskFormat)
	resp, err := http.Post(node.URL()+"/v2/images", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var img struct{ ID string }
	err = json.NewDecoder(resp.Body).Decode(&img)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("create %s: %d %v", name, resp.StatusCode, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req, _ := http.NewRequest("PUT", node.URL()+"/v2/images/"+img.ID+"/file", f)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Fatalf("upload %s: %d %s", name, resp.StatusCode, b)
	}
	return img.ID
}

func fileMD5(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// TestQEMUBootsFromTheMount uploads the boot fixture as raw and qcow2
// through the API and boots both with QEMU straight from a storage node's
// FUSE mount: the raw image by ID, the qcow2 through its by-name link.
func TestQEMUBootsFromTheMount(t *testing.T) {
	harness.RequireTool(t, "fusermount3", "fuse3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is missing: the FUSE mount cannot be tested: %v", err)
	}
	fx := harness.BootFixture(t)
	mnt := filepath.Join(t.TempDir(), "mnt")
	node := harness.StartNode(t, harness.NodeOptions{MountDir: mnt})
	rawID := apiUpload(t, node, "boot-raw", "raw", fx.Raw)
	qcowID := apiUpload(t, node, "boot-qcow2", "qcow2", fx.Qcow2)

	rawPath := filepath.Join(mnt, "images", rawID)
	qcowLink := filepath.Join(mnt, "by-name", "boot-qcow2")
	deadline := time.Now().Add(time.Second)
	for {
		_, errA := os.Stat(rawPath)
		_, errB := os.Stat(qcowLink)
		if errA == nil && errB == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uploaded images not visible in the mount within a second: %v, %v", errA, errB)
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 64)
	n, err := syscall.Getxattr(rawPath, "user.mosaic.checksum", buf)
	if err != nil || string(buf[:n]) != fileMD5(t, fx.Raw) {
		t.Fatalf("user.mosaic.checksum of the raw image: %q, %v", buf[:n], err)
	}
	if target, err := os.Readlink(qcowLink); err != nil || target != "../images/"+qcowID {
		t.Fatalf("by-name/boot-qcow2 -> %q, %v; want ../images/%s", target, err, qcowID)
	}
	n, err = syscall.Getxattr(qcowLink, "user.mosaic.disk_format", buf)
	if err != nil || string(buf[:n]) != "qcow2" {
		t.Fatalf("user.mosaic.disk_format through the link: %q, %v", buf[:n], err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	raw := fx.Boot(t, ctx, rawPath, "raw")
	t.Logf("raw image booted from the mount: marker after %.2f s (loader %.2f s)", raw.Marker, raw.Loader)
	qcow := fx.Boot(t, ctx, qcowLink, "qcow2")
	t.Logf("qcow2 image booted from the mount via by-name: marker after %.2f s (loader %.2f s)", qcow.Marker, qcow.Loader)
}
