package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

// Set implements flag.Value.
func (l *stringList) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// loadCertPool reads PEM files of certificates into a pool (nil for no
// files).
func loadCertPool(paths []string) (*x509.CertPool, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	pool := x509.NewCertPool()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("trusted certificates: %w", err)
		}
		n := 0
		for {
			var blk *pem.Block
			blk, b = pem.Decode(b)
			if blk == nil {
				break
			}
			if blk.Type != "CERTIFICATE" {
				continue
			}
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				return nil, fmt.Errorf("trusted certificates %s: %w", p, err)
			}
			pool.AddCert(c)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("trusted certificates %s: no PEM CERTIFICATE in the file", p)
		}
	}
	return pool, nil
}

type verifyConfig struct {
	url       string
	token     string
	file      string
	trustedCA stringList
}

// errVerifyFailed makes the command exit non-zero after it printed why.
var errVerifyFailed = errors.New("verification failed")

// verify is `mosaic verify IMAGE`: it reads the image record and its
// signing certificate through a node's API, re-streams the content (from
// the node, which verifies every chunk against its BLAKE3 ID as it reads
// it from its store, or from --file, e.g. the image on a mount), recomputes
// the digest, and checks the signature and the certificate (dates, and the
// chain to --trusted-ca certificates when given), as Nova's
// verify_glance_signatures does before a boot.
func verify(ctx context.Context, args []string) error {
	var c verifyConfig
	fs := newFlagSet("verify")
	defURL := os.Getenv("OS_IMAGE_URL")
	if defURL == "" {
		defURL = "http://127.0.0.1:9292"
	}
	fs.StringVar(&c.url, "url", defURL, "a node's API URL (default $OS_IMAGE_URL or http://127.0.0.1:9292)")
	fs.StringVar(&c.token, "token", os.Getenv("OS_AUTH_TOKEN"), "X-Auth-Token to send (default $OS_AUTH_TOKEN)")
	fs.StringVar(&c.file, "file", "", "read the content from this file (e.g. DIR/images/ID on a mount) instead of the API")
	fs.Var(&c.trustedCA, "trusted-ca", "PEM file of trusted certificates the signing certificate must chain to (repeatable)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: mosaic verify [flags] IMAGE_ID")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return errors.New("verify: want exactly one image ID")
	}
	trusted, err := loadCertPool(c.trustedCA)
	if err != nil {
		return err
	}
	v := &verifier{c: c, trusted: trusted, out: os.Stdout, client: &http.Client{}}
	return v.run(ctx, fs.Arg(0))
}

type verifier struct {
	c       verifyConfig
	trusted *x509.CertPool
	out     io.Writer
	client  *http.Client
}

func (v *verifier) line(key, format string, args ...any) {
	fmt.Fprintf(v.out, "%-12s %s\n", key, fmt.Sprintf(format, args...))
}

func (v *verifier) fail(format string, args ...any) error {
	v.line("result", "FAILED: "+format, args...)
	return errVerifyFailed
}

func (v *verifier) get(ctx context.Context, path, accept string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(v.c.url, "/")+path, nil)
	if err != nil {
		return nil, err
	}
	if v.c.token != "" {
		req.Header.Set("X-Auth-Token", v.c.token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, apiMessage(b))
	}
	return resp, nil
}

// apiMessage extracts the explanation from a Glance or Barbican error body.
func apiMessage(b []byte) string {
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
		for _, k := range []string{"description", "message"} {
			if s, ok := m[k].(string); ok {
				return strings.TrimSuffix(s, "<br /><br />\n\n\n")
			}
		}
	}
	return strings.TrimSpace(string(b))
}

func (v *verifier) run(ctx context.Context, id string) error {
	resp, err := v.get(ctx, "/v2/images/"+url.PathEscape(id), "application/json")
	if err != nil {
		return fmt.Errorf("verify %s: %w", id, err)
	}
	var rec map[string]any
	err = json.NewDecoder(resp.Body).Decode(&rec)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("verify %s: decode image: %w", id, err)
	}
	str := func(k string) string { s, _ := rec[k].(string); return s }
	name := str("name")
	v.line("image", "%s (%s)", id, name)
	status := str("status")
	if status != string(engine.StatusActive) && status != string(engine.StatusDeactivated) {
		return v.fail("the image is %s: it has no content to verify", status)
	}
	size := int64(-1)
	if f, ok := rec["size"].(float64); ok {
		size = int64(f)
	}
	props := map[string]string{}
	for _, k := range engine.SignatureProperties {
		if s, ok := rec[k].(string); ok {
			props[k] = s
		}
	}
	spec, err := engine.ParseSignatureSpec(props)
	if err != nil {
		msg, _ := engine.UserMessage(err)
		return v.fail("%s", msg)
	}

	// What to hash: the signature digest, and os_hash when it is another
	// algorithm and the image is unsigned (the only check left then).
	osAlgo, osValue := str("os_hash_algo"), str("os_hash_value")
	osHash, osOK := map[string]crypto.Hash{"sha512": crypto.SHA512, "sha384": crypto.SHA384, "sha256": crypto.SHA256}[osAlgo]
	var hashes []hash.Hash
	var sigHash, osH hash.Hash
	if spec != nil {
		sigHash = spec.Hash.New()
		hashes = append(hashes, sigHash)
		if osOK && osHash == spec.Hash {
			osH = sigHash
		}
	} else if osOK {
		osH = osHash.New()
		hashes = append(hashes, osH)
	}

	var cert *x509.Certificate
	if spec != nil {
		if cert, err = v.certificate(ctx, spec.CertificateID); err != nil {
			return v.fail("%v", err)
		}
		v.line("certificate", "%s: %q, %s key, valid %s to %s", spec.CertificateID, cert.Subject.String(),
			cert.PublicKeyAlgorithm, cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}

	// Re-stream the content.
	src, from, err := v.content(ctx, id)
	if err != nil {
		return v.fail("content: %v", err)
	}
	defer src.Close()
	start := time.Now()
	w := io.Discard
	if len(hashes) > 0 {
		ws := make([]io.Writer, len(hashes))
		for i, h := range hashes {
			ws[i] = h
		}
		w = io.MultiWriter(ws...)
	}
	n, err := io.CopyBuffer(w, src, make([]byte, 1<<20))
	elapsed := time.Since(start)
	if err != nil {
		return v.fail("content: the stream from %s stopped after %d of %d bytes: %v (a node stops the stream when a chunk fails its BLAKE3 check or cannot be read; its log names the chunk)", from, n, size, err)
	}
	v.line("content", "%d bytes from %s in %v (%.0f MB/s)", n, from, elapsed.Round(time.Millisecond), float64(n)/1e6/max(elapsed.Seconds(), 1e-9))
	if size >= 0 && n != size {
		return v.fail("content: read %d bytes, the image's size is %d", n, size)
	}
	if osH != nil {
		got := hex.EncodeToString(osH.Sum(nil))
		if got != osValue {
			return v.fail("os_hash_value: the content's %s is %s, the record says %s", osAlgo, got, osValue)
		}
		v.line("os_hash", "%s matches the record", osAlgo)
	}
	if spec == nil {
		v.line("signature", "none (the image has no img_signature properties)")
		if osH == nil {
			v.line("result", "UNSIGNED: the size matches the record (it has no os_hash to compare)")
		} else {
			v.line("result", "UNSIGNED: content matches the record")
		}
		return nil
	}
	now := time.Now()
	if err := engine.CheckCertificateDates(cert, now); err != nil {
		return v.fail("%v", err)
	}
	if v.trusted != nil {
		if err := engine.VerifyChain(cert, v.trusted, nil, now); err != nil {
			return v.fail("%v", err)
		}
		v.line("chain", "the certificate chains to a --trusted-ca certificate")
	} else {
		v.line("chain", "not checked (no --trusted-ca given)")
	}
	digest := sigHash.Sum(nil)
	if err := spec.VerifyDigest(cert, digest); err != nil {
		return v.fail("%v (content %s %x, key type %s)", err, spec.HashMethod, digest, spec.KeyType)
	}
	v.line("signature", "%s with %s over the content: valid", spec.KeyType, spec.HashMethod)
	v.line("result", "VERIFIED")
	return nil
}

// certificate reads the signing certificate through the key-manager API.
func (v *verifier) certificate(ctx context.Context, id string) (*x509.Certificate, error) {
	resp, err := v.get(ctx, "/v1/secrets/"+url.PathEscape(id)+"/payload", "")
	if err != nil {
		return nil, fmt.Errorf("certificate not found with ID %s: %w", id, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", id, err)
	}
	cert, err := engine.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("invalid certificate format: secret %s: %v", id, err)
	}
	return cert, nil
}

// content opens the image's bytes: the local file, or the API download.
func (v *verifier) content(ctx context.Context, id string) (io.ReadCloser, string, error) {
	if v.c.file != "" {
		f, err := os.Open(v.c.file)
		return f, v.c.file, err
	}
	path := "/v2/images/" + url.PathEscape(id) + "/file"
	resp, err := v.get(ctx, path, "")
	if err != nil {
		return nil, "", err
	}
	return resp.Body, strings.TrimRight(v.c.url, "/") + path, nil
}
