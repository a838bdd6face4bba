package signing

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestMountVerifySignatures: with --verify-signatures the mount verifies a
// signed image at its first open (once: the second open is served from the
// cache), reports the status in user.mosaic.signature, and refuses with
// EACCES an image whose certificate expired since or whose chunk was
// corrupted at rest.
func TestMountVerifySignatures(t *testing.T) {
	t.Parallel()
	harness.RequireTool(t, "fusermount3", "fuse3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is missing: the mount cannot be tested: %v", err)
	}
	work := t.TempDir()
	dataDir := filepath.Join(work, "data")
	mnt := filepath.Join(work, "mnt")
	node := harness.StartNode(t, harness.NodeOptions{DataDir: dataDir, MountDir: mnt, Extra: []string{"--verify-signatures"}})
	base := node.URL()

	data := randomData(4<<20, 4)
	dataPath := writeFile(t, work, "signed.raw", data)
	key := newKey(t, work, engine.KeyTypeECCSECP384R1, "ec")
	cert := storeCert(t, base, selfSignedCert(t, key, "ec-signer"))
	signed := createImage(t, base, "signed", signatureProps(sign(t, key, engine.KeyTypeECCSECP384R1, "SHA-384", dataPath),
		"SHA-384", engine.KeyTypeECCSECP384R1, cert))
	if r := upload(t, base, signed, data); r.status != http.StatusNoContent {
		t.Fatalf("signed upload: %d %s", r.status, r.body)
	}
	plain := randomData(1<<20, 5)
	unsigned := createImage(t, base, "unsigned", nil)
	if r := upload(t, base, unsigned, plain); r.status != http.StatusNoContent {
		t.Fatalf("unsigned upload: %d %s", r.status, r.body)
	}
	path := func(id string) string { return filepath.Join(mnt, "images", id) }

	if st := xattr(t, path(signed)); st != "verified: at upload" {
		t.Fatalf("before the first open: %q", st)
	}
	for range 2 {
		got, err := os.ReadFile(path(signed))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read the signed image through the mount: %v", err)
		}
	}
	if n := strings.Count(node.Log(), `msg="image signature verified before open" node=`+nodeField(node)+` image=`+signed); n != 1 {
		t.Fatalf("the signed image was verified %d times for two opens, want 1 (the second from the cache)", n)
	}
	if st := xattr(t, path(signed)); !strings.HasPrefix(st, "verified: on open, certificate valid until ") {
		t.Fatalf("after open: %q", st)
	}
	if got, err := os.ReadFile(path(unsigned)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("read the unsigned image: %v", err)
	}
	if st := xattr(t, path(unsigned)); st != "unsigned" {
		t.Fatalf("unsigned image: %q", st)
	}

	// A certificate that expires after the upload: the cached verification
	// is rechecked against the certificate's dates at every open.
	shortKey := newKey(t, work, engine.KeyTypeRSAPSS, "short")
	shortData := randomData(256<<10, 6)
	shortPath := writeFile(t, work, "short.raw", shortData)
	expiry := time.Now().Add(15 * time.Second) // room for a slow, shared machine
	shortCert := storeCert(t, base, datedCert(t, shortKey, "short-lived", time.Now().Add(-time.Hour), expiry))
	short := createImage(t, base, "short-lived", signatureProps(sign(t, shortKey, engine.KeyTypeRSAPSS, "SHA-512", shortPath),
		"SHA-512", engine.KeyTypeRSAPSS, shortCert))
	if r := upload(t, base, short, shortData); r.status != http.StatusNoContent {
		t.Fatalf("upload before the certificate expires: %d %s", r.status, r.body)
	}
	if got, err := os.ReadFile(path(short)); err != nil || !bytes.Equal(got, shortData) {
		t.Fatalf("open before the certificate expires: %v", err)
	}
	waitFor(t, 60*time.Second, "the open to be refused after the certificate expired", func() bool {
		f, err := os.Open(path(short))
		if err == nil {
			f.Close()
			return false
		}
		if !errors.Is(err, syscall.EACCES) {
			t.Fatalf("open after expiry: %v, want EACCES", err)
		}
		return true
	})
	if st := xattr(t, path(short)); !strings.HasPrefix(st, "failed: Certificate \"CN=short-lived\" expired at") {
		t.Fatalf("after expiry: %q", st)
	}

	// A chunk corrupted at rest: the next mount refuses the signed image.
	node.Stop()
	corruptStoredChunk(t, dataDir, data)
	node.Start()
	// The API answers a moment before the tree is mounted.
	waitFor(t, 10*time.Second, "the mount after the restart", func() bool {
		_, err := os.Stat(path(unsigned))
		return err == nil
	})
	_, err := os.Open(path(signed))
	if !errors.Is(err, syscall.EACCES) {
		t.Fatalf("open of a corrupted signed image: %v, want EACCES", err)
	}
	log := node.Log()
	if !strings.Contains(log, `msg="refusing to open an image whose signature did not verify"`) ||
		!strings.Contains(log, "is corrupt") {
		t.Fatalf("the refusal and its reason are not in the log")
	}
	if st := xattr(t, path(signed)); !strings.HasPrefix(st, "failed: ") || !strings.Contains(st, "corrupt") {
		t.Fatalf("corrupted image: %q", st)
	}
	if got, err := os.ReadFile(path(unsigned)); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("the unsigned image after the restart: %v", err)
	}
}

// nodeField returns the node= value the process logs with.
func nodeField(p *harness.Process) string {
	log := p.Log()
	i := strings.Index(log, `msg="API listening" node=`)
	if i < 0 {
		return ""
	}
	rest := log[i+len(`msg="API listening" node=`):]
	return rest[:strings.IndexByte(rest, ' ')]
}
