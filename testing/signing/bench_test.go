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
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// The machine these figures come from is shared: wall times move with
// other people's load. Each measurement also records CPU time (user +
// system) of the processes doing the work, which the scheduler's share
// does not change; both ratios are reported.

// nodePID finds the mosaic serve process listening on apiAddr.
func nodePID(b *testing.B, apiAddr string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmd, []byte("--api-addr\x00"+apiAddr+"\x00")) {
			return pid
		}
	}
	b.Fatalf("no process serves %s", apiAddr)
	return 0
}

// procCPU is a process's user+system CPU time so far.
func procCPU(b *testing.B, pid int) time.Duration {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the command name (which may contain spaces): state is
	// field 3; utime and stime are fields 14 and 15, in clock ticks (100/s).
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	sy, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+sy) * 10 * time.Millisecond
}

// selfCPU is this process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sample is one measured operation.
type sample struct{ wall, cpu time.Duration }

type samples map[string][]sample

func (s samples) median(kind string) (wall, cpu time.Duration) {
	var w, c []time.Duration
	for _, x := range s[kind] {
		w, c = append(w, x.wall), append(c, x.cpu)
	}
	return median(w), median(c)
}

// BenchmarkSignedUpload1GiB: upload of a 1 GiB image with and without a
// signature, interleaved in the same run against the real binary over HTTP.
// "new": random content never seen before, so every chunk is compressed and
// written; each of these uploads runs on a fresh node with an empty store
// (otherwise each upload inherits the flushes and compactions of the
// previous ones, which moved a run's times by ±30% whatever was signed).
// "dedup": the same 1 GiB again on one node, so no chunk is written. The
// node remembers the digests of content it ingested (docs/storage.md,
// "Known content"), so these uploads compute no digest at all once the
// signature's algorithm has been computed for the content once: this
// phase measures known-content uploads, signed or not;
// BenchmarkUploadPipeline1GiB (a service without the memo) still isolates
// the cost of the extra hash in a CPU-bound pass. The signature
// digest rides the ingest's single pass: SHA-256 runs as one more hash
// goroutine; SHA-512 reuses the os_hash digest and costs nothing. CPU is
// the node's.
func BenchmarkSignedUpload1GiB(b *testing.B) {
	s := newBenchSigner(b)
	certPath := filepath.Join(b.TempDir(), "cert.pem")
	if err := os.WriteFile(certPath, s.certPEM, 0o644); err != nil {
		b.Fatal(err)
	}
	type target struct {
		base, cert string
		pid        int
		done       func()
	}
	start := func() target {
		dir, err := os.MkdirTemp("", "mosaic-bench-node-")
		if err != nil {
			b.Fatal(err)
		}
		node := harness.StartNode(b, harness.NodeOptions{DataDir: dir})
		return target{base: node.URL(), cert: storeCert(b, node.URL(), certPath), pid: nodePID(b, node.APIAddr),
			done: func() { node.Stop(); os.RemoveAll(dir) }}
	}
	kinds := []struct {
		name string
		hash crypto.Hash
	}{{"unsigned", 0}, {"SHA-256", crypto.SHA256}, {"SHA-512", crypto.SHA512}}
	run := func(phase string, rounds int, content func(seed uint64) []byte, node func() target) {
		got := samples{}
		seed := uint64(100)
		for round := range rounds {
			// Rotate the order so that every kind takes every position
			// once in every three rounds.
			order := append(slices.Clone(kinds[round%len(kinds):]), kinds[:round%len(kinds)]...)
			for _, k := range order {
				seed++
				data := content(seed)
				n := node()
				var props map[string]any
				if k.hash != 0 {
					props = signatureProps(s.sign(b, k.hash, data), k.name, engine.KeyTypeRSAPSS, n.cert)
				}
				id := createImage(b, n.base, "bench-"+k.name, props)
				cpu0, t0 := procCPU(b, n.pid), time.Now()
				r := upload(b, n.base, id, data)
				x := sample{wall: time.Since(t0), cpu: procCPU(b, n.pid) - cpu0}
				if n.done != nil {
					n.done()
				}
				if r.status != http.StatusNoContent {
					b.Fatalf("%s upload: %d %s", k.name, r.status, r.body)
				}
				got[k.name] = append(got[k.name], x)
				b.Logf("%s round %d %-8s wall %v (%.0f MB/s) node CPU %v", phase, round, k.name,
					x.wall.Round(time.Millisecond), float64(benchSize)/1e6/x.wall.Seconds(), x.cpu)
			}
		}
		w0, c0 := got.median("unsigned")
		for _, k := range kinds {
			w, c := got.median(k.name)
			b.ReportMetric(w.Seconds(), phase+"-"+k.name+"-wall-s")
			b.ReportMetric(c.Seconds(), phase+"-"+k.name+"-cpu-s")
			if k.hash != 0 {
				b.ReportMetric(w.Seconds()/w0.Seconds(), phase+"-"+k.name+"/unsigned-wall")
				b.ReportMetric(c.Seconds()/c0.Seconds(), phase+"-"+k.name+"/unsigned-cpu")
			}
		}
	}
	run("new", 6, func(seed uint64) []byte { return randomData(benchSize, seed) }, start)

	shared := start()
	defer shared.done()
	same := randomData(benchSize, 1)
	if r := upload(b, shared.base, createImage(b, shared.base, "bench-warm", nil), same); r.status != http.StatusNoContent {
		b.Fatalf("warm-up upload: %d %s", r.status, r.body)
	}
	keep := shared
	keep.done = nil
	run("dedup", 3, func(uint64) []byte { return same }, func() target { return keep })
}

// BenchmarkVerify1GiB: `mosaic verify` (the real binary: record and
// certificate through the API, content re-streamed from the node's store,
// every chunk checked against its BLAKE3 ID, SHA-256 recomputed, signature
// checked) against a plain sequential read of the same image through the
// same API, interleaved, warm. CPU is the node's plus the reader's (the
// mosaic verify process, or this process for the plain read).
func BenchmarkVerify1GiB(b *testing.B) {
	node := harness.StartNode(b, harness.NodeOptions{})
	base := node.URL()
	pid := nodePID(b, node.APIAddr)
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
	read := func() sample {
		cpu0, self0, start := procCPU(b, pid), selfCPU(), time.Now()
		resp, err := http.Get(base + "/v2/images/" + id + "/file")
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 1<<20))
		resp.Body.Close()
		if err != nil || n != benchSize {
			b.Fatalf("read: %d bytes, %v", n, err)
		}
		return sample{wall: time.Since(start), cpu: procCPU(b, pid) - cpu0 + selfCPU() - self0}
	}
	verify := func() sample {
		cpu0, start := procCPU(b, pid), time.Now()
		cmd := exec.Command(harness.Binary(b), "verify", "--url", base, id)
		out, err := cmd.CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("VERIFIED")) {
			b.Fatalf("mosaic verify: %v\n%s", err, out)
		}
		st := cmd.ProcessState
		return sample{wall: time.Since(start), cpu: procCPU(b, pid) - cpu0 + st.UserTime() + st.SystemTime()}
	}
	compareReads(b, "read", read, "verify", verify)
}

// compareReads interleaves a baseline read and a verification, warm (one
// read first), and reports throughput and the verify/read ratios.
func compareReads(b *testing.B, baseName string, base func() sample, name string, f func() sample) {
	base()
	got := samples{}
	for round := range 4 {
		var x, y sample
		if round%2 == 0 {
			x, y = base(), f()
		} else {
			y, x = f(), base()
		}
		got[baseName] = append(got[baseName], x)
		got[name] = append(got[name], y)
		b.Logf("round %d %s wall %v CPU %v; %s wall %v CPU %v", round, baseName, x.wall.Round(time.Millisecond), x.cpu,
			name, y.wall.Round(time.Millisecond), y.cpu)
	}
	rw, rc := got.median(baseName)
	vw, vc := got.median(name)
	b.ReportMetric(float64(benchSize)/1e6/rw.Seconds(), baseName+"-MB/s")
	b.ReportMetric(float64(benchSize)/1e6/vw.Seconds(), name+"-MB/s")
	b.ReportMetric(rw.Seconds()/vw.Seconds(), name+"/"+baseName+"-wall")
	b.ReportMetric(rc.Seconds()/vc.Seconds(), name+"/"+baseName+"-cpu")
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
	read := func() sample {
		cpu0, start := selfCPU(), time.Now()
		rd, _, err := node.svc.Open(ctx, img.ID)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := rd.CopyRange(ctx, io.Discard, 0, rd.Size()); err != nil {
			b.Fatal(err)
		}
		rd.Close()
		return sample{wall: time.Since(start), cpu: selfCPU() - cpu0}
	}
	verify := func() sample {
		gate := engine.NewSignatureGate(node.svc, engine.SignatureGateConfig{}) // fresh: no cached result
		cpu0, start := selfCPU(), time.Now()
		if err := gate.CheckOpen(ctx, img); err != nil {
			b.Fatal(err)
		}
		return sample{wall: time.Since(start), cpu: selfCPU() - cpu0}
	}
	compareReads(b, "read", read, "verify-on-open", verify)
	// A second open is served from the gate's cache.
	gate := engine.NewSignatureGate(node.svc, engine.SignatureGateConfig{Logger: slog.New(slog.DiscardHandler)})
	_ = gate.CheckOpen(ctx, img)
	start := time.Now()
	if err := gate.CheckOpen(ctx, img); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(time.Since(start).Microseconds()), "second-open-µs")
}

// BenchmarkUploadPipeline1GiB isolates the cost of the signature digest in
// the ingest pass: engine.Service.Upload in process over the real stores,
// the same 1 GiB each time (deduplicated: no chunk writes, no HTTP, so the
// pass is CPU-bound and the extra hash is as visible as it can be), five
// interleaved rounds. CPU is this process's.
func BenchmarkUploadPipeline1GiB(b *testing.B) {
	node := startInProcess(b, slog.New(slog.DiscardHandler))
	ctx := context.Background()
	s := newBenchSigner(b)
	sec, err := node.keys.Create(ctx, &engine.Secret{SecretType: engine.SecretTypeCertificate, ContentType: "application/octet-stream", Payload: s.certPEM})
	if err != nil {
		b.Fatal(err)
	}
	data := randomData(benchSize, 13)
	up := func(props map[string]string) sample {
		img, err := node.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare", Properties: props})
		if err != nil {
			b.Fatal(err)
		}
		cpu0, start := selfCPU(), time.Now()
		if _, err := node.svc.Upload(ctx, img.ID, bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
		return sample{wall: time.Since(start), cpu: selfCPU() - cpu0}
	}
	up(nil) // store the chunks once
	kinds := []struct {
		name  string
		props map[string]string
	}{{"unsigned", nil}}
	for _, h := range []struct {
		name string
		hash crypto.Hash
	}{{"SHA-256", crypto.SHA256}, {"SHA-512", crypto.SHA512}} {
		props := map[string]string{}
		for k, v := range signatureProps(s.sign(b, h.hash, data), h.name, engine.KeyTypeRSAPSS, sec.ID) {
			props[k] = v.(string)
		}
		kinds = append(kinds, struct {
			name  string
			props map[string]string
		}{h.name, props})
	}
	got := samples{}
	for round := range 5 {
		order := slices.Clone(kinds)
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, k := range order {
			x := up(k.props)
			got[k.name] = append(got[k.name], x)
			b.Logf("round %d %-8s wall %v CPU %v", round, k.name, x.wall.Round(time.Millisecond), x.cpu)
		}
	}
	w0, c0 := got.median("unsigned")
	for _, k := range kinds[1:] {
		w, c := got.median(k.name)
		b.ReportMetric(w.Seconds()/w0.Seconds(), k.name+"/unsigned-wall")
		b.ReportMetric(c.Seconds()/c0.Seconds(), k.name+"/unsigned-cpu")
	}
	b.ReportMetric(w0.Seconds(), "unsigned-wall-s")
	b.ReportMetric(c0.Seconds(), "unsigned-cpu-s")
}
