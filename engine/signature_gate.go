package engine

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// SignatureGateConfig configures a SignatureGate.
type SignatureGateConfig struct {
	// Trusted, if set, requires signing certificates to chain to one of
	// these (Nova's trusted certificates); Intermediates may supply links.
	Trusted       *x509.CertPool
	Intermediates *x509.CertPool
	// FailureTTL is how long a failed verification is remembered before
	// the next open verifies again (a repaired chunk, a replaced
	// certificate); 0 means 30 s. Successes are remembered while the
	// certificate stays within its dates.
	FailureTTL time.Duration
	// MaxEntries bounds the cache; 0 means 4096.
	MaxEntries int
	Logger     *slog.Logger
	// Now may be replaced in tests.
	Now func() time.Time
}

// SignatureGate verifies signed images before they are opened, as Nova's
// verify_glance_signatures does before a boot: it re-reads the content from
// the store, recomputes the digest, and checks the signature and the
// certificate (dates, and chain when trusted certificates are configured).
// Outcomes are cached per image, manifest and signature properties, so a
// second open costs nothing; concurrent opens of one image share one
// verification. Unsigned images pass. Safe for concurrent use.
type SignatureGate struct {
	svc *Service
	cfg SignatureGateConfig

	mu      sync.Mutex
	entries map[gateKey]*gateEntry
}

type gateKey struct {
	id   string
	root ChunkID
	fp   string
}

type gateEntry struct {
	done chan struct{} // closed when the verification ended
	err  error         // nil: verified
	// transient: err says the verification could not run to its end
	// (cancelled, store unavailable), not that the image failed it.
	transient bool
	at        time.Time
	// notBefore/notAfter: the certificate's dates, rechecked on every hit.
	notBefore, notAfter time.Time
}

// NewSignatureGate returns a gate verifying images of svc.
func NewSignatureGate(svc *Service, cfg SignatureGateConfig) *SignatureGate {
	if cfg.FailureTTL <= 0 {
		cfg.FailureTTL = 30 * time.Second
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &SignatureGate{svc: svc, cfg: cfg, entries: map[gateKey]*gateEntry{}}
}

// refused wraps the reason an open was refused; it matches ErrForbidden
// (EACCES at the mount).
func refused(id string, err error) error {
	return fmt.Errorf("%w: image %s: signature verification failed: %w", ErrForbidden, id, err)
}

// CheckOpen returns nil if img may be opened: it is unsigned, or its
// signature verifies. Otherwise it returns an error matching ErrForbidden
// with the reason, or a transient error (not cached) when the verification
// could not run to its end.
func (g *SignatureGate) CheckOpen(ctx context.Context, img *Image) error {
	if !HasSignatureProperties(img.Properties) {
		return nil
	}
	spec, err := ParseSignatureSpec(img.Properties)
	if err != nil {
		msg, _ := UserMessage(err)
		g.cfg.Logger.Warn("refusing to open an image with invalid signature properties", "image", img.ID, "reason", msg)
		return refused(img.ID, &SignatureError{Reason: msg})
	}
	key := gateKey{id: img.ID, root: img.ManifestRoot, fp: spec.Fingerprint()}
	for {
		g.mu.Lock()
		e, ok := g.entries[key]
		if !ok {
			e = &gateEntry{done: make(chan struct{})}
			g.evictLocked()
			g.entries[key] = e
			g.mu.Unlock()
			return g.verify(ctx, img, key, e)
		}
		g.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		now := g.cfg.Now()
		switch {
		case e.transient:
			return fmt.Errorf("verify signature of image %s: %w", img.ID, e.err)
		case e.err == nil && !now.Before(e.notBefore) && !now.After(e.notAfter):
			return nil
		case e.err != nil && now.Sub(e.at) < g.cfg.FailureTTL:
			g.cfg.Logger.Warn("refusing to open an image whose signature did not verify", "image", img.ID,
				"reason", e.err.Error(), "cached", true)
			return refused(img.ID, e.err)
		}
		// Stale: the certificate's dates no longer hold, or the failure
		// is old enough to try again.
		g.mu.Lock()
		if g.entries[key] == e {
			delete(g.entries, key)
		}
		g.mu.Unlock()
	}
}

// verify runs one verification for the entry it owns.
func (g *SignatureGate) verify(ctx context.Context, img *Image, key gateKey, e *gateEntry) error {
	start := g.cfg.Now()
	_, cert, err := g.svc.VerifyStored(ctx, img, VerifyOptions{
		Now: start, Trusted: g.cfg.Trusted, Intermediates: g.cfg.Intermediates,
	})
	definitive := err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrCorrupt)
	g.mu.Lock()
	e.err, e.at, e.transient = err, g.cfg.Now(), !definitive
	if cert != nil {
		e.notBefore, e.notAfter = cert.NotBefore, cert.NotAfter
	}
	if !definitive && g.entries[key] == e {
		delete(g.entries, key) // transient: the next open tries again
	}
	g.mu.Unlock()
	close(e.done)
	switch {
	case err == nil:
		g.cfg.Logger.Info("image signature verified before open", "image", img.ID,
			"certificate", img.Properties[PropSignatureCertUUID], "duration", g.cfg.Now().Sub(start))
		return nil
	case definitive:
		g.cfg.Logger.Warn("refusing to open an image whose signature did not verify", "image", img.ID, "reason", err.Error())
		return refused(img.ID, err)
	}
	return fmt.Errorf("verify signature of image %s: %w", img.ID, err)
}

// evictLocked drops finished entries when the cache is full: expired
// failures first, then arbitrary ones.
func (g *SignatureGate) evictLocked() {
	if len(g.entries) < g.cfg.MaxEntries {
		return
	}
	for k, e := range g.entries {
		select {
		case <-e.done:
			delete(g.entries, k)
		default:
		}
		if len(g.entries) < g.cfg.MaxEntries*3/4 {
			return
		}
	}
}

// Status describes img's signature for the user.mosaic.signature xattr:
// the outcome of this gate's verification when it has one, else what the
// record says (see SignatureStatus).
func (g *SignatureGate) Status(img *Image) string {
	spec, err := ParseSignatureSpec(img.Properties)
	if err == nil && spec != nil {
		g.mu.Lock()
		e, ok := g.entries[gateKey{id: img.ID, root: img.ManifestRoot, fp: spec.Fingerprint()}]
		g.mu.Unlock()
		if ok {
			select {
			case <-e.done:
				if e.err != nil {
					return SignatureFailed + ": " + e.err.Error()
				}
				return SignatureVerified + ": on open, certificate valid until " + e.notAfter.UTC().Format(time.RFC3339)
			default:
			}
		}
	}
	return SignatureStatus(img)
}
