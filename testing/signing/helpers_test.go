package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// ---- openssl: keys, certificates and signatures, made the way users make them.

// keyKinds are the key types under test and how openssl makes their keys.
var keyKinds = []string{engine.KeyTypeRSAPSS, engine.KeyTypeDSA, engine.KeyTypeECCSECP384R1, engine.KeyTypeECCSECP521R1}

var hashMethods = []string{"SHA-224", "SHA-256", "SHA-384", "SHA-512"}

func openssl(t testing.TB, args ...string) string {
	t.Helper()
	harness.RequireTool(t, "openssl", "openssl")
	out, errOut, err := harness.RunErr(context.Background(), nil, "openssl", args...)
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

var (
	dsaParamsOnce sync.Once
	dsaParamsPath string
)

// newKey makes a private key of the kind in dir and returns its path.
func newKey(t testing.TB, dir, kind, name string) string {
	t.Helper()
	p := filepath.Join(dir, name+".key.pem")
	switch kind {
	case engine.KeyTypeRSAPSS:
		openssl(t, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", p)
	case engine.KeyTypeDSA:
		// Parameter generation is slow: one set of domain parameters for
		// every DSA key of the test binary (keys still differ).
		dsaParamsOnce.Do(func() {
			d, err := os.MkdirTemp("", "mosaic-dsa-")
			if err != nil {
				t.Fatal(err)
			}
			dsaParamsPath = filepath.Join(d, "dsa-params.pem")
			openssl(t, "genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
				"-pkeyopt", "dsa_paramgen_q_bits:256", "-out", dsaParamsPath)
		})
		openssl(t, "genpkey", "-paramfile", dsaParamsPath, "-out", p)
	case engine.KeyTypeECCSECP384R1:
		openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-out", p)
	case engine.KeyTypeECCSECP521R1:
		openssl(t, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:secp521r1", "-out", p)
	default:
		t.Fatalf("no openssl recipe for %s", kind)
	}
	return p
}

// selfSignedCert makes a self-signed certificate for key, valid 30 days.
func selfSignedCert(t testing.TB, key, cn string) string {
	t.Helper()
	p := strings.TrimSuffix(key, ".key.pem") + "-" + cn + ".crt.pem"
	openssl(t, "req", "-new", "-x509", "-key", key, "-out", p, "-days", "30", "-subj", "/CN="+cn)
	return p
}

// datedCert makes a self-signed certificate for key valid from start to
// end (openssl ca -selfsign: req -x509 cannot backdate).
func datedCert(t testing.TB, key, cn string, start, end time.Time) string {
	t.Helper()
	dir, err := os.MkdirTemp(filepath.Dir(key), "ca-")
	if err != nil {
		t.Fatal(err)
	}
	cnf := filepath.Join(dir, "ca.cnf")
	conf := fmt.Sprintf(`[ ca ]
default_ca = CA_default
[ CA_default ]
database = %[1]s/index.txt
new_certs_dir = %[1]s
serial = %[1]s/serial
default_md = sha256
policy = policy_any
unique_subject = no
[ policy_any ]
commonName = supplied
`, dir)
	for name, content := range map[string]string{cnf: conf, filepath.Join(dir, "index.txt"): "", filepath.Join(dir, "serial"): "01\n"} {
		if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	csr := filepath.Join(dir, "req.csr")
	openssl(t, "req", "-new", "-key", key, "-subj", "/CN="+cn, "-out", csr)
	p := strings.TrimSuffix(key, ".key.pem") + "-" + cn + ".crt.pem"
	const layout = "20060102150405Z"
	openssl(t, "ca", "-batch", "-config", cnf, "-selfsign", "-keyfile", key, "-in", csr,
		"-startdate", start.UTC().Format(layout), "-enddate", end.UTC().Format(layout), "-out", p)
	return p
}

// caSignedCert makes a certificate for key signed by a CA's key and
// certificate.
func caSignedCert(t testing.TB, key, cn, caKey, caCert string) string {
	t.Helper()
	dir := filepath.Dir(key)
	csr := filepath.Join(dir, cn+".csr")
	p := filepath.Join(dir, cn+".crt.pem")
	openssl(t, "req", "-new", "-key", key, "-subj", "/CN="+cn, "-out", csr)
	openssl(t, "x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-CAcreateserial", "-days", "30", "-out", p)
	return p
}

// caCert makes a self-signed CA certificate (basicConstraints CA:TRUE).
func caCert(t testing.TB, key, cn string) string {
	t.Helper()
	p := strings.TrimSuffix(key, ".key.pem") + "-" + cn + ".crt.pem"
	openssl(t, "req", "-new", "-x509", "-key", key, "-out", p, "-days", "30", "-subj", "/CN="+cn,
		"-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,digitalSignature")
	return p
}

// sign signs file with key as the signing guide says and returns the
// base64 signature for img_signature.
func sign(t testing.TB, key, keyType, method, file string) string {
	t.Helper()
	md := "-" + strings.ToLower(strings.ReplaceAll(method, "-", ""))
	sig := file + "." + strings.ToLower(keyType+method) + ".sig"
	args := []string{"dgst", md, "-sign", key}
	if keyType == engine.KeyTypeRSAPSS {
		args = append(args, "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:max",
			"-sigopt", "rsa_mgf1_md:"+md[1:])
	}
	openssl(t, append(args, "-out", sig, file)...)
	b, err := os.ReadFile(sig)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// ---- HTTP against a node.

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response %d is not a JSON object: %v\n%s", r.status, err, r.body)
	}
	return m
}

func do(t testing.TB, method, url string, header map[string]string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

var jsonHeaders = map[string]string{"Content-Type": "application/json", "Accept": "application/json"}

// storeCert stores a PEM certificate in the key manager the way
// python-barbicanclient stores bytes, and returns the secret's UUID.
func storeCert(t testing.TB, base, certPath string) string {
	t.Helper()
	pemBytes, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{
		"name": filepath.Base(certPath), "secret_type": "certificate",
		"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64",
		"payload": base64.StdEncoding.EncodeToString(pemBytes),
	})
	r := do(t, "POST", base+"/v1/secrets", jsonHeaders, body)
	if r.status != http.StatusCreated {
		t.Fatalf("store certificate %s: %d %s", certPath, r.status, r.body)
	}
	ref, _ := r.json(t)["secret_ref"].(string)
	return ref[strings.LastIndex(ref, "/")+1:]
}

func signatureProps(sig, method, keyType, certID string) map[string]any {
	return map[string]any{
		engine.PropSignature: sig, engine.PropSignatureHashMethod: method,
		engine.PropSignatureKeyType: keyType, engine.PropSignatureCertUUID: certID,
	}
}

// createImage creates a raw/bare image with extra properties.
func createImage(t testing.TB, base, name string, props map[string]any) string {
	t.Helper()
	body := map[string]any{"name": name, "disk_format": "raw", "container_format": "bare"}
	for k, v := range props {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	r := do(t, "POST", base+"/v2/images", jsonHeaders, b)
	if r.status != http.StatusCreated {
		t.Fatalf("create image %s: %d %s", name, r.status, r.body)
	}
	return r.json(t)["id"].(string)
}

func upload(t testing.TB, base, id string, data []byte) response {
	t.Helper()
	return do(t, "PUT", base+"/v2/images/"+id+"/file",
		map[string]string{"Content-Type": "application/octet-stream", "Accept": "application/json"}, data)
}

func showImage(t testing.TB, base, id string) map[string]any {
	t.Helper()
	r := do(t, "GET", base+"/v2/images/"+id, map[string]string{"Accept": "application/json"}, nil)
	if r.status != http.StatusOK {
		t.Fatalf("show %s: %d %s", id, r.status, r.body)
	}
	return r.json(t)
}

// storeUsage returns the node's chunk count and stored bytes.
func storeUsage(t testing.TB, base string) (chunks, stored float64) {
	t.Helper()
	m := do(t, "GET", base+"/v2/info/usage", nil, nil).json(t)
	st := m["mosaic"].(map[string]any)["store"].(map[string]any)
	return st["chunks"].(float64), st["stored_bytes"].(float64)
}

func randomData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// corruptStoredChunk flips one byte of a stored chunk that holds part of
// data, in the Pebble store of a stopped node, and returns the chunk's ID.
// It goes through the store's own Open (same options) and finds the chunk
// by content, so it depends on neither the chunk size nor the key layout
// beyond "the key ends with the chunk ID".
func corruptStoredChunk(t testing.TB, dataDir string, data []byte) engine.ChunkID {
	t.Helper()
	st, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dataDir, "chunks")})
	if err != nil {
		t.Fatalf("open the stopped node's chunk store: %v", err)
	}
	defer st.Close()
	db := st.DB()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		key, val []byte
		id       engine.ChunkID
	)
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) < len(id) {
			continue
		}
		copy(id[:], k[len(k)-len(id):])
		v, err := it.ValueAndErr()
		if err != nil {
			continue
		}
		chunk, err := engine.DecodeChunk(id, v, nil)
		if err != nil || len(chunk) < 4096 || !bytes.Contains(data, chunk) {
			continue
		}
		key, val = bytes.Clone(k), bytes.Clone(v)
		break
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	if key == nil {
		t.Fatal("no stored chunk holds part of the image")
	}
	val[len(val)-1] ^= 0x01
	// Through the store: it writes the chunk's keys the way it reads them
	// and makes the write durable (Pebble runs without a WAL there).
	if err := st.PutEncoded(context.Background(), id, val); err != nil {
		t.Fatal(err)
	}
	if err := st.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	return id
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
