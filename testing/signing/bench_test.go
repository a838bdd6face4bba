package signing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// The figures of issue 8 (make bench). Each benchmark runs its own rounds
// and reports medians and the ratio; run with -benchtime 1x.

const benchSize = 1 << 30

// benchSigner is an RSA-2048 key and its certificate PEM; Go signs in the
// benchmarks (openssl would have to read each 1 GiB file from disk).
type benchSigner struct {
	key     *rsa.PrivateKey
	certPEM []byte
}

func newBenchSigner(b *testing.B) *benchSigner {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	return &benchSigner{key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// sign makes an RSA-PSS signature with the maximum salt, as the guide's
// openssl command does.
func (s *benchSigner) sign(b *testing.B, h crypto.Hash, data []byte) string {
	w := h.New()
	w.Write(data)
	salt := (s.key.N.BitLen()-1+7)/8 - h.Size() - 2
	sig, err := rsa.SignPSS(rand.Reader, s.key, h, w.Sum(nil), &rsa.PSSOptions{SaltLength: salt, Hash: h})
	if err != nil {
		b.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkSignedUpload1GiB: upload of a 1 GiB image with and without a
// signature, interleaved in the same run against the real binary over HTTP.
// "new": random content never seen before, so every chunk is compressed and
// written (disk-bound here); "dedup": the same 1 GiB again, so no chunk is
// written and the pass is CPU-bound (the strictest case for an extra hash).
// The signature digest rides the ingest's single pass: SHA-256 runs as one
// more hash goroutine; SHA-512 reuses the os_hash digest and costs nothing.
func BenchmarkSignedUpload1GiB(b *testing.B) {
	node := harness.StartNode(b, harness.NodeOptions{})
	base := node.URL()
	s := newBenchSigner(b)
	certPath := filepath.Join(b.TempDir(), "cert.pem")
	if err := os.WriteFile(certPath, s.certPEM, 0o644); err != nil {
		b.Fatal(err)
	}
	cert := storeCert(b, base, certPath)
	kinds := []struct {
		name string
		hash crypto.Hash
	}{{"unsigned", 0}, {"SHA-256", crypto.SHA256}, {"SHA-512", crypto.SHA512}}
	run := func(phase string, rounds int, content func(seed uint64) []byte) {
		times := map[string][]time.Duration{}
		seed := uint64(100)
		for round := range rounds {
			order := slices.Clone(kinds)
			if round%2 == 1 {
				slices.Reverse(order)
			}
			for _, k := range order {
				seed++
				data := content(seed)
				var props map[string]any
				if k.hash != 0 {
					props = signatureProps(s.sign(b, k.hash, data), k.name, engine.KeyTypeRSAPSS, cert)
				}
				id := createImage(b, base, "bench-"+k.name, props)
				start := time.Now()
				r := upload(b, base, id, data)
				el := time.Since(start)
				if r.status != http.StatusNoContent {
					b.Fatalf("%s upload: %d %s", k.name, r.status, r.body)
				}
				times[k.name] = append(times[k.name], el)
				b.Logf("%s round %d %-8s %v (%.0f MB/s)", phase, round, k.name, el.Round(time.Millisecond), float64(benchSize)/1e6/el.Seconds())
			}
		}
		base0 := median(times["unsigned"])
		for _, k := range kinds {
			m := median(times[k.name])
			b.ReportMetric(m.Seconds(), phase+"-"+k.name+"-s")
			if k.hash != 0 {
				b.ReportMetric(m.Seconds()/base0.Seconds(), phase+"-"+k.name+"/unsigned")
			}
		}
	}
	run("new", 2, func(seed uint64) []byte { return randomData(benchSize, seed) })
	same := randomData(benchSize, 1)
	if r := upload(b, base, createImage(b, base, "bench-warm", nil), same); r.status != http.StatusNoContent {
		b.Fatalf("warm-up upload: %d %s", r.status, r.body)
	}
	run("dedup", 3, func(uint64) []byte { return same })
}

// BenchmarkVerify1GiB: `mosaic verify` (the real binary: record and
// certificate through the API, content re-streamed from the node's store,
// every chunk checked against its BLAKE3 ID, SHA-256 recomputed, signature
// checked) against a plain sequential read of the same image through the
// same API, interleaved, warm.
func BenchmarkVerify1GiB(b *testing.B) {
	node := harness.StartNode(b, harness.NodeOptions{})
	base := node.URL()
	s := newBenchSigner(b)
	certPath := filepath.Join(b.TempDir(), "cert.pem")
	if err := os.WriteFile(certPath, s.certPEM, 0o644); err != nil {
		b.Fatal(err)
	}
	cert := storeCert(b, base, certPath)
	data := randomData(benchSize, 7)
	id := createImage(b, base, "bench-verify", signatureProps(s.sign(b, crypto.SHA256, data), "SHA-256", engine.KeyTypeRSAPSS, cert))
	if r := upload(b, base, id, data); r.status != http.StatusNoContent {
		b.Fatalf("upload: %d %s", r.status, r.body)
	}
	data = nil
	read := func() time.Duration {
		start := time.Now()
		resp, err := http.Get(base + "/v2/images/" + id + "/file")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
		resp.Body.Close()
		if err != nil || n != benchSize {
			b.Fatalf("read: %d bytes, %v", n, err)
		}
		return time.Since(start)
	}
	verify := func() time.Duration {
		start := time.Now()
		out, errOut, err := harness.RunErr(context.Background(), nil, harness.Binary(b), "verify", "--url", base, id)
		if err != nil || !bytes.Contains([]byte(out), []byte("VERIFIED")) {
			b.Fatalf("mosaic verify: %v\n%s%s", err, out, errOut)
		}
		return time.Since(start)
	}
	read() // warm the page cache once; both kinds then run warm
	var reads, verifies []time.Duration
	for round := range 4 {
		if round%2 == 0 {
			reads = append(reads, read())
			verifies = append(verifies, verify())
		} else {
			verifies = append(verifies, verify())
			reads = append(reads, read())
		}
		b.Logf("round %d read %v verify %v", round, reads[round].Round(time.Millisecond), verifies[round].Round(time.Millisecond))
	}
	r, v := median(reads), median(verifies)
	b.ReportMetric(float64(benchSize)/1e6/r.Seconds(), "read-MB/s")
	b.ReportMetric(float64(benchSize)/1e6/v.Seconds(), "verify-MB/s")
	b.ReportMetric(r.Seconds()/v.Seconds(), "verify/read")
}

// BenchmarkVerifyOnOpen1GiB: the mount's --verify-signatures pass
// (engine.SignatureGate: re-read from the chunk store, SHA-256, signature)
// against a plain sequential read of the same image with the engine's
// reader, in process, interleaved, warm.
func BenchmarkVerifyOnOpen1GiB(b *testing.B) {
	node := startInProcess(b, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	s := newBenchSigner(b)
	sec, err := node.keys.Create(ctx, &engine.Secret{SecretType: engine.SecretTypeCertificate, ContentType: "application/octet-stream", Payload: s.certPEM})
	if err != nil {
		b.Fatal(err)
	}
	data := randomData(benchSize, 11)
	props := map[string]string{}
	for k, v := range signatureProps(s.sign(b, crypto.SHA256, data), "SHA-256", engine.KeyTypeRSAPSS, sec.ID) {
		props[k] = v.(string)
	}
	img, err := node.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare", Properties: props})
	if err != nil {
		b.Fatal(err)
	}
	if img, err = node.svc.Upload(ctx, img.ID, bytes.NewReader(data)); err != nil {
		b.Fatal(err)
	}
	data = nil
	read := func() time.Duration {
		start := time.Now()
		rd, _, err := node.svc.Open(ctx, img.ID)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rd.CopyRange(ctx, io.Discard, 0, rd.Size()); err != nil {
			b.Fatal(err)
		}
		rd.Close()
		return time.Since(start)
	}
	verify := func() time.Duration {
		gate := engine.NewSignatureGate(node.svc, engine.SignatureGateConfig{}) // fresh: no cached result
		start := time.Now()
		if err := gate.CheckOpen(ctx, img); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	read()
	var reads, verifies []time.Duration
	for round := range 4 {
		if round%2 == 0 {
			reads = append(reads, read())
			verifies = append(verifies, verify())
		} else {
			verifies = append(verifies, verify())
			reads = append(reads, read())
		}
		b.Logf("round %d read %v verify-on-open %v", round, reads[round].Round(time.Millisecond), verifies[round].Round(time.Millisecond))
	}
	r, v := median(reads), median(verifies)
	b.ReportMetric(float64(benchSize)/1e6/r.Seconds(), "read-MB/s")
	b.ReportMetric(float64(benchSize)/1e6/v.Seconds(), "verify-MB/s")
	b.ReportMetric(r.Seconds()/v.Seconds(), "verify/read")
	// A second open is served from the gate's cache.
	gate := engine.NewSignatureGate(node.svc, engine.SignatureGateConfig{Logger: slog.New(slog.DiscardHandler)})
	_ = gate.CheckOpen(ctx, img)
	start := time.Now()
	if err := gate.CheckOpen(ctx, img); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds()), "second-open-µs")
}
