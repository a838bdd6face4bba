package signing

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestGlanceCLISignedImage: the signing guide's flow with the real glance
// CLI, unchanged: image-create with the four img_signature properties and
// --file gives an active image; the same command with a changed file fails
// with Glance's message and leaves the image killed.
func TestGlanceCLISignedImage(t *testing.T) {
	t.Parallel()
	harness.RequireTool(t, "glance", "python3-glanceclient")
	node := harness.StartNode(t, harness.NodeOptions{})
	base := node.URL()
	work := t.TempDir()
	data := randomData(2<<20, 8)
	dataPath := writeFile(t, work, "image.qcow2", data)
	key := newKey(t, work, engine.KeyTypeRSAPSS, "signing_key")
	certID := storeCert(t, base, selfSignedCert(t, key, "image-signer"))
	sig := sign(t, key, engine.KeyTypeRSAPSS, "SHA-256", dataPath)
	env := []string{"OS_IMAGE_URL=" + base, "OS_AUTH_TOKEN=anything", "HOME=" + t.TempDir()}
	args := func(file string) []string {
		return []string{"image-create", "--name", "signed", "--disk-format", "raw", "--container-format", "bare",
			"--property", "img_signature=" + sig,
			"--property", "img_signature_hash_method=SHA-256",
			"--property", "img_signature_key_type=RSA-PSS",
			"--property", "img_signature_certificate_uuid=" + certID,
			"--file", file}
	}

	out := harness.Run(t, context.Background(), env, "glance", args(dataPath)...)
	img, err := harness.ParseGlanceTable(out)
	if err != nil {
		t.Fatalf("glance image-create: %v\n%s", err, out)
	}
	if img["status"] != "active" || img["img_signature_key_type"] != "RSA-PSS" {
		t.Fatalf("glance image-create: %v", img)
	}

	changed := append([]byte(nil), data...)
	changed[0] ^= 0xff
	out, errOut, err := harness.RunErr(context.Background(), env, "glance", args(writeFile(t, work, "changed.qcow2", changed))...)
	if err == nil {
		t.Fatalf("glance image-create with a changed file succeeded:\n%s", out)
	}
	m := regexp.MustCompile(`HTTP 400 Bad Request: Signature verification failed for image ([0-9a-f-]{36}): Signature verification failed`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("glance image-create with a changed file: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	if st := showImage(t, base, m[1])["status"]; st != "killed" {
		t.Fatalf("image %s is %v after the failed upload, want killed", m[1], st)
	}
	if list := harness.Run(t, context.Background(), env, "glance", "image-list"); strings.Contains(list, m[1]) {
		t.Fatalf("image-list shows the killed image:\n%s", list)
	}
}
