package signing

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// mosaicVerify runs `mosaic verify` and returns its output and whether it
// exited 0.
func mosaicVerify(t *testing.T, base string, args ...string) (string, bool) {
	t.Helper()
	full := append([]string{"verify", "--url", base}, args...)
	out, errOut, err := harness.RunErr(context.Background(), nil, harness.Binary(t), full...)
	if err != nil && !strings.Contains(errOut, "verification failed") {
		t.Fatalf("mosaic %s: %v\n%s\n%s", strings.Join(full, " "), err, out, errOut)
	}
	return out + errOut, err == nil
}

// TestVerifyCommand: `mosaic verify` passes a good image, checks the chain
// to --trusted-ca, and fails on a signature that no longer matches the
// content and on a chunk corrupted at rest.
func TestVerifyCommand(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	node := harness.StartNode(t, harness.NodeOptions{DataDir: dataDir})
	base := node.URL()
	work := t.TempDir()
	data := randomData(8<<20, 3)
	dataPath := writeFile(t, work, "image.raw", data)

	// A signing key certified by a CA, and a CA that certified nothing here.
	caKey := newKey(t, work, engine.KeyTypeECCSECP384R1, "ca")
	ca := caCert(t, caKey, "test-ca")
	strangerCA := caCert(t, newKey(t, work, engine.KeyTypeECCSECP384R1, "stranger"), "stranger-ca")
	key := newKey(t, work, engine.KeyTypeRSAPSS, "signer")
	certID := storeCert(t, base, caSignedCert(t, key, "signer", caKey, ca))
	sig := sign(t, key, engine.KeyTypeRSAPSS, "SHA-256", dataPath)

	signed := createImage(t, base, "signed", signatureProps(sig, "SHA-256", engine.KeyTypeRSAPSS, certID))
	if r := upload(t, base, signed, data); r.status != http.StatusNoContent {
		t.Fatalf("signed upload: %d %s", r.status, r.body)
	}
	unsigned := createImage(t, base, "unsigned", nil)
	if r := upload(t, base, unsigned, data); r.status != http.StatusNoContent {
		t.Fatalf("unsigned upload: %d %s", r.status, r.body)
	}

	expect := func(name string, ok bool, want string, args ...string) string {
		t.Helper()
		out, passed := mosaicVerify(t, base, args...)
		if passed != ok || !strings.Contains(out, want) {
			t.Fatalf("%s: exit ok=%v, want %v with %q:\n%s", name, passed, ok, want, out)
		}
		return out
	}
	out := expect("signed", true, "result       VERIFIED", signed)
	for _, w := range []string{"RSA-PSS with SHA-256 over the content: valid", "8388608 bytes from", "not checked (no --trusted-ca given)"} {
		if !strings.Contains(out, w) {
			t.Fatalf("verify output lacks %q:\n%s", w, out)
		}
	}
	expect("unsigned", true, "UNSIGNED: content matches the record", unsigned)
	expect("trusted CA", true, "chains to a --trusted-ca certificate", "--trusted-ca", ca, signed)
	expect("stranger CA", false, "does not chain to a trusted certificate", "--trusted-ca", strangerCA, signed)

	// The signature no longer matches the content: the bytes a hypervisor
	// holds (--file) differ from what was signed by one byte.
	changed := append([]byte(nil), data...)
	changed[12345] ^= 1
	expect("changed content", false, "Signature verification failed", "--file", writeFile(t, work, "changed.raw", changed), signed)
	expect("same content from a file", true, "VERIFIED", "--file", dataPath, signed)

	// A chunk corrupted at rest: the node stops the stream at that chunk.
	node.Stop()
	id := corruptStoredChunk(t, dataDir, data)
	node.Start()
	out = expect("corrupt chunk", false, "FAILED: content: the stream from", signed)
	if !strings.Contains(out, "stopped after") {
		t.Fatalf("verify output does not say where the stream stopped:\n%s", out)
	}
	waitFor(t, 10*time.Second, "the node to log the corrupt chunk", func() bool { return strings.Contains(node.Log(), id.String()) })
	expect("corrupt chunk, unsigned image", false, "FAILED: content", unsigned)

	// A killed image has nothing to verify.
	killed := createImage(t, base, "killed", signatureProps(sig, "SHA-256", engine.KeyTypeRSAPSS, certID))
	if r := upload(t, base, killed, changed); r.status != http.StatusBadRequest {
		t.Fatalf("upload of changed content: %d %s", r.status, r.body)
	}
	expect("killed", false, "the image is killed", killed)
}
