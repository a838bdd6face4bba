package signing

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/raftmeta"
)

// inProcess is a node's engine wired in-process over the real stores.
type inProcess struct {
	svc   *engine.Service
	keys  *engine.KeyManager
	store *pebblestore.Store
}

func startInProcess(t testing.TB, log *slog.Logger) *inProcess {
	t.Helper()
	dir := t.TempDir()
	chunks, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dir, "chunks")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chunks.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	meta, err := raftmeta.Open(raftmeta.Config{NodeID: "n1", Dir: filepath.Join(dir, "raft"), RaftAddr: addr, Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { meta.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := meta.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	keys := engine.NewKeyManager(meta, engine.KeyManagerConfig{})
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: "n1", Certificates: keys}, meta, chunks, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	return &inProcess{svc: svc, keys: keys, store: chunks}
}

// countingHandler counts log records by message.
type countingHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[r.Message]++
	h.mu.Unlock()
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }
func (h *countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[msg]
}

// TestSignatureGateInProcess exercises the engine's verification gate on
// real stores: one verification for concurrent opens, re-verification when
// the signature properties change, failures remembered for FailureTTL only,
// transient errors never cached, and the record of a killed upload.
func TestSignatureGateInProcess(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	node := startInProcess(t, slog.New(slog.DiscardHandler))
	key, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "gate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := node.keys.Create(ctx, &engine.Secret{SecretType: engine.SecretTypeCertificate,
		ContentType: "application/octet-stream", Payload: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})})
	if err != nil {
		t.Fatal(err)
	}
	data := randomData(3<<20, 9)
	clear(data[1<<20 : 2<<20]) // a zero run: chunks that are never stored
	signProps := func(content []byte) map[string]string {
		d := sha512.Sum512(content) // SHA-512: the same digest as os_hash, computed once at upload
		sig, err := ecdsa.SignASN1(rand.Reader, key, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{engine.PropSignature: base64.StdEncoding.EncodeToString(sig),
			engine.PropSignatureHashMethod: "SHA-512", engine.PropSignatureKeyType: engine.KeyTypeECCSECP521R1,
			engine.PropSignatureCertUUID: cert.ID}
	}
	newImage := func(props map[string]string, content []byte) (*engine.Image, error) {
		img, err := node.svc.Create(ctx, &engine.Image{DiskFormat: "raw", ContainerFormat: "bare", Properties: props})
		if err != nil {
			t.Fatal(err)
		}
		return node.svc.Upload(ctx, img.ID, bytes.NewReader(content))
	}
	img, err := newImage(signProps(data), data)
	if err != nil {
		t.Fatal(err)
	}
	if img.Status != engine.StatusActive || img.Signature == nil || !img.Signature.Verified {
		t.Fatalf("signed upload: %+v", img)
	}

	h := &countingHandler{n: map[string]int{}}
	now := time.Now()
	var clock atomic.Int64
	clock.Store(now.UnixNano())
	gate := engine.NewSignatureGate(node.svc, engine.SignatureGateConfig{Logger: slog.New(h), FailureTTL: time.Minute,
		Now: func() time.Time { return time.Unix(0, clock.Load()) }})

	// Concurrent opens share one verification.
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = gate.CheckOpen(ctx, img) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
	}
	if n := h.count("image signature verified before open"); n != 1 {
		t.Fatalf("%d verifications for 8 concurrent opens, want 1", n)
	}

	// The owner replaces the signature with one over other content: the
	// record no longer vouches for it, and the gate verifies anew and refuses.
	other := signProps(append([]byte("other"), data...))
	changed, err := node.svc.Update(ctx, img.ID, func(im *engine.Image) error {
		im.Properties[engine.PropSignature] = other[engine.PropSignature]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := engine.SignatureStatus(changed); !strings.HasPrefix(st, "unverified: the signature properties changed") {
		t.Fatalf("status after the change: %q", st)
	}
	err = gate.CheckOpen(ctx, changed)
	if !errors.Is(err, engine.ErrForbidden) || !strings.Contains(err.Error(), "Signature verification failed") {
		t.Fatalf("open after the signature changed: %v", err)
	}
	if st := gate.Status(changed); !strings.HasPrefix(st, "failed: Signature verification failed") {
		t.Fatalf("gate status: %q", st)
	}
	// Remembered for FailureTTL, then verified again.
	_ = gate.CheckOpen(ctx, changed)
	if n := h.count("refusing to open an image whose signature did not verify"); n != 2 {
		t.Fatalf("%d refusals logged, want 2", n)
	}
	verifiedBefore := h.count("image signature verified before open")
	clock.Add(int64(2 * time.Minute))
	_ = gate.CheckOpen(ctx, changed)
	if h.count("refusing to open an image whose signature did not verify") != 3 || h.count("image signature verified before open") != verifiedBefore {
		t.Fatal("the failure was not verified again after FailureTTL")
	}

	// A value that can never verify is refused when written.
	if _, err := node.svc.Update(ctx, img.ID, func(im *engine.Image) error {
		im.Properties[engine.PropSignatureKeyType] = "ECC_SECT571K1"
		return nil
	}); !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("update to a binary curve: %v", err)
	}

	// A transient failure (cancelled open) is not cached.
	unsignedOK, err := newImage(nil, data)
	if err != nil || gate.CheckOpen(ctx, unsignedOK) != nil {
		t.Fatalf("unsigned image: %v", err)
	}
	second, err := newImage(signProps(data), data)
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := gate.CheckOpen(cctx, second); err == nil || errors.Is(err, engine.ErrForbidden) {
		t.Fatalf("cancelled open: %v", err)
	}
	if err := gate.CheckOpen(ctx, second); err != nil {
		t.Fatalf("open after a cancelled one: %v", err)
	}

	// A failed upload leaves a killed record with the reason.
	_, err = newImage(signProps(data), append([]byte("x"), data...))
	if !errors.Is(err, engine.ErrInvalid) {
		t.Fatalf("upload of other content: %v", err)
	}
	msg, _ := engine.UserMessage(err)
	id := strings.TrimSuffix(strings.Fields(strings.TrimPrefix(msg, "Signature verification failed for image "))[0], ":")
	rec, err := node.svc.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != engine.StatusKilled || rec.HasData() || rec.Signature == nil || rec.Signature.Verified ||
		!strings.Contains(rec.Signature.Reason, "does not match the SHA-512 digest") {
		t.Fatalf("killed record: %+v %+v", rec, rec.Signature)
	}
	if _, _, err := node.svc.Open(ctx, id); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("open of a killed image: %v", err)
	}
}
