package signing

import (
	"bytes"
	"encoding/json"
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

// keySet is one key type's material: a signing key with a valid and an
// expired certificate, and another key's certificate.
type keySet struct {
	keyType              string
	key                  string
	cert, expired, other string // certificate secret UUIDs
}

func makeKeySet(t *testing.T, base, dir, keyType string) keySet {
	t.Helper()
	name := strings.ToLower(strings.ReplaceAll(keyType, "_", "-"))
	key := newKey(t, dir, keyType, name)
	other := newKey(t, dir, keyType, name+"-other")
	now := time.Now()
	return keySet{
		keyType: keyType, key: key,
		cert:    storeCert(t, base, selfSignedCert(t, key, name)),
		expired: storeCert(t, base, datedCert(t, key, name+"-expired", now.AddDate(0, -2, 0), now.AddDate(0, -1, 0))),
		other:   storeCert(t, base, selfSignedCert(t, other, name+"-other")),
	}
}

// TestSignedUploadMatrix signs with openssl for every key type and hash
// method and uploads through the API: the untouched image becomes active
// and readable; the same signature over a flipped byte, with another key's
// certificate or with an expired certificate kills the image, which is then
// never readable through the API or the mount.
func TestSignedUploadMatrix(t *testing.T) {
	t.Parallel()
	harness.RequireTool(t, "fusermount3", "fuse3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is missing: the mount cannot be tested: %v", err)
	}
	work := t.TempDir()
	mnt := filepath.Join(work, "mnt")
	node := harness.StartNode(t, harness.NodeOptions{MountDir: mnt})
	base := node.URL()

	data := randomData(300<<10, 1)
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 0x80
	dataPath := writeFile(t, work, "image.raw", data)

	type killedCase struct{ id, why, wantReason string }
	var killed []killedCase
	for _, keyType := range keyKinds {
		ks := makeKeySet(t, base, work, keyType)
		for _, method := range hashMethods {
			sig := sign(t, ks.key, keyType, method, dataPath)
			name := keyType + "/" + method

			id := createImage(t, base, name, signatureProps(sig, method, keyType, ks.cert))
			if r := upload(t, base, id, data); r.status != http.StatusNoContent {
				t.Fatalf("%s: signed upload: %d %s", name, r.status, r.body)
			}
			if img := showImage(t, base, id); img["status"] != "active" {
				t.Fatalf("%s: status %v after a signed upload", name, img["status"])
			}
			if r := do(t, "GET", base+"/v2/images/"+id+"/file", nil, nil); r.status != http.StatusOK || !bytes.Equal(r.body, data) {
				t.Fatalf("%s: download: %d, %d bytes", name, r.status, len(r.body))
			}
			if got, err := os.ReadFile(filepath.Join(mnt, "images", id)); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("%s: read through the mount: %v", name, err)
			}
			if st := xattr(t, filepath.Join(mnt, "images", id)); st != "verified: at upload" {
				t.Fatalf("%s: user.mosaic.signature = %q", name, st)
			}

			for _, bad := range []struct {
				why, cert, reason string
				content           []byte
			}{
				{"one byte flipped", ks.cert, "Signature verification failed", flipped},
				{"another key's certificate", ks.other, "Signature verification failed", data},
				{"an expired certificate", ks.expired, "expired at", data},
			} {
				id := createImage(t, base, name+" "+bad.why, signatureProps(sig, method, keyType, bad.cert))
				r := upload(t, base, id, bad.content)
				var m map[string]any
				_ = json.Unmarshal(r.body, &m)
				msg, _ := m["message"].(string)
				if r.status != http.StatusBadRequest || !strings.Contains(msg, "Signature verification failed for image "+id) ||
					!strings.Contains(msg, bad.reason) {
					t.Fatalf("%s with %s: %d %s", name, bad.why, r.status, r.body)
				}
				killed = append(killed, killedCase{id, name + " with " + bad.why, bad.reason})
			}
		}
	}

	// Killed images: status killed, no content through the API or the mount,
	// absent from the list, and the reason in the log.
	list := do(t, "GET", base+"/v2/images?limit=1000", nil, nil).json(t)
	listed := map[string]bool{}
	for _, im := range list["images"].([]any) {
		listed[im.(map[string]any)["id"].(string)] = true
	}
	for _, k := range killed {
		img := showImage(t, base, k.id)
		if img["status"] != "killed" || img["size"] != nil || img["checksum"] != nil {
			t.Fatalf("%s: image %v", k.why, img)
		}
		if r := do(t, "GET", base+"/v2/images/"+k.id+"/file", nil, nil); r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Fatalf("%s: download of a killed image: %d, %d bytes", k.why, r.status, len(r.body))
		}
		if _, err := os.Stat(filepath.Join(mnt, "images", k.id)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: the killed image is on the mount: %v", k.why, err)
		}
		if listed[k.id] {
			t.Fatalf("%s: the killed image is listed", k.why)
		}
		if r := upload(t, base, k.id, data); r.status != http.StatusConflict {
			t.Fatalf("%s: re-upload to a killed image: %d %s", k.why, r.status, r.body)
		}
	}
	if want := len(keyKinds) * len(hashMethods) * 3; len(killed) != want {
		t.Fatalf("%d killed cases, want %d", len(killed), want)
	}
	log := node.Log()
	for _, k := range killed {
		if !strings.Contains(log, `msg="signature verification failed; image killed" node=`) ||
			!strings.Contains(log, "image="+k.id) {
			t.Fatalf("%s: the log does not record the kill of %s", k.why, k.id)
		}
	}
}

// TestSignatureRefusedBeforeData: what can be judged before reading the
// body is refused with 400 and stores nothing; the image stays queued.
func TestSignatureRefusedBeforeData(t *testing.T) {
	t.Parallel()
	node := harness.StartNode(t, harness.NodeOptions{})
	base := node.URL()
	work := t.TempDir()
	data := randomData(1<<20, 2)
	dataPath := writeFile(t, work, "image.raw", data)
	key := newKey(t, work, engine.KeyTypeRSAPSS, "rsa")
	cert := storeCert(t, base, selfSignedCert(t, key, "rsa"))
	ecCert := storeCert(t, base, selfSignedCert(t, newKey(t, work, engine.KeyTypeECCSECP384R1, "ec"), "ec"))
	sig := sign(t, key, engine.KeyTypeRSAPSS, "SHA-256", dataPath)
	full := signatureProps(sig, "SHA-256", engine.KeyTypeRSAPSS, cert)
	without := func(k string) map[string]any {
		m := map[string]any{}
		for kk, v := range full {
			if kk != k {
				m[kk] = v
			}
		}
		return m
	}
	with := func(k, v string) map[string]any {
		m := without(k)
		m[k] = v
		return m
	}

	// Values that can never verify are refused when written.
	for _, c := range []struct {
		props map[string]any
		want  string
	}{
		{with(engine.PropSignatureKeyType, "ECC_SECT571K1"), "supported key types: RSA-PSS, DSA, ECC_SECP384R1, ECC_SECP521R1"},
		{with(engine.PropSignatureKeyType, "ECC_SECT409R1"), "binary-field elliptic curves are not supported"},
		{with(engine.PropSignatureHashMethod, "SHA-1"), "Invalid signature hash method: SHA-1"},
		{with(engine.PropSignature, "@@@"), "not properly encoded using base64"},
	} {
		body := map[string]any{"name": "refused", "disk_format": "raw", "container_format": "bare"}
		for k, v := range c.props {
			body[k] = v
		}
		b, _ := json.Marshal(body)
		r := do(t, "POST", base+"/v2/images", jsonHeaders, b)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), c.want) {
			t.Fatalf("create with %v: %d %s, want 400 with %q", c.props, r.status, r.body, c.want)
		}
	}
	if n := len(do(t, "GET", base+"/v2/images", nil, nil).json(t)["images"].([]any)); n != 0 {
		t.Fatalf("refused creates made %d images", n)
	}

	chunks0, stored0 := storeUsage(t, base)
	for _, c := range []struct {
		props map[string]any
		want  string
	}{
		{without(engine.PropSignatureCertUUID), "Image signature properties are incomplete: img_signature_certificate_uuid missing"},
		{without(engine.PropSignature), "incomplete: img_signature missing"},
		{with(engine.PropSignatureCertUUID, "11111111-2222-4333-8444-555555555555"), "Certificate not found with ID: 11111111-2222-4333-8444-555555555555"},
		{with(engine.PropSignatureCertUUID, ecCert), "Invalid public key type for signature key type: RSA-PSS"},
	} {
		id := createImage(t, base, "refused-at-upload", c.props)
		r := upload(t, base, id, data)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), c.want) {
			t.Fatalf("upload with %v: %d %s, want 400 with %q", c.props, r.status, r.body, c.want)
		}
		if img := showImage(t, base, id); img["status"] != "queued" {
			t.Fatalf("after a refused upload the image is %v, want queued", img["status"])
		}
	}
	if chunks, stored := storeUsage(t, base); chunks != chunks0 || stored != stored0 {
		t.Fatalf("refused uploads stored data: chunks %v -> %v, bytes %v -> %v", chunks0, chunks, stored0, stored)
	}
	// The complete, valid set still works on a fresh image.
	id := createImage(t, base, "ok", full)
	if r := upload(t, base, id, data); r.status != http.StatusNoContent {
		t.Fatalf("valid signed upload: %d %s", r.status, r.body)
	}
}

// xattr reads user.mosaic.signature.
func xattr(t testing.TB, path string) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := syscall.Getxattr(path, "user.mosaic.signature", buf)
	if err != nil {
		t.Fatalf("getxattr %s: %v", path, err)
	}
	return string(buf[:n])
}
