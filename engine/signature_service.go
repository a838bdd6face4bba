package engine

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"
)

// CertificateSource resolves img_signature_certificate_uuid with the rights
// of the context's caller; *KeyManager implements it. Errors for a missing
// or unusable certificate are *SignatureError.
type CertificateSource interface {
	Certificate(ctx context.Context, id string) (*x509.Certificate, error)
}

// uploadSignature is the signature check of one upload, prepared before any
// data is read.
type uploadSignature struct {
	spec *SignatureSpec
	cert *x509.Certificate
	// fromOSHash: the os_hash digest is the signature digest (same
	// algorithm), so no extra hash runs.
	fromOSHash bool
}

// osHashes maps Glance's hashing_algorithm names to hashes.
var osHashes = map[string]crypto.Hash{"": crypto.SHA512, "sha512": crypto.SHA512, "sha384": crypto.SHA384, "sha256": crypto.SHA256}

// prepareSignature parses a signed image's properties and fetches its
// certificate, before the upload reads any data: an incomplete or
// unsupported set, a missing certificate or a key of the wrong type fail
// here with 400 and change nothing. It returns nil for an unsigned image.
func (s *Service) prepareSignature(ctx context.Context, img *Image) (*uploadSignature, error) {
	spec, err := ParseSignatureSpec(img.Properties)
	if err != nil || spec == nil {
		return nil, err
	}
	refuse := func(reason string) error {
		return Errorf(ErrInvalid, "Signature verification failed for image %s: %s", img.ID, reason)
	}
	if s.cfg.Certificates == nil {
		return nil, refuse("this node has no key manager to read certificates from")
	}
	cert, err := s.cfg.Certificates.Certificate(ctx, spec.CertificateID)
	var se *SignatureError
	if errors.As(err, &se) {
		return nil, refuse(se.Reason)
	}
	if err != nil {
		return nil, fmt.Errorf("upload %s: read signing certificate: %w", img.ID, err)
	}
	if err := spec.CheckKey(cert); err != nil {
		return nil, refuse(err.Error())
	}
	osAlgo := img.OSHashAlgo
	if osAlgo == "" {
		osAlgo = s.cfg.OSHashAlgo
	}
	return &uploadSignature{spec: spec, cert: cert, fromOSHash: osHashes[osAlgo] == spec.Hash}, nil
}

// hash is the extra whole-stream hash the ingest must compute (0: none).
func (u *uploadSignature) hash() crypto.Hash {
	if u == nil || u.fromOSHash {
		return 0
	}
	return u.spec.Hash
}

// verify checks the signature over the ingested stream's digest and the
// certificate's dates at now.
func (u *uploadSignature) verify(res *IngestResult, now time.Time) error {
	if u == nil {
		return nil
	}
	digest := res.SignatureDigest
	if u.fromOSHash {
		digest = res.OSHash
	}
	return u.spec.Verify(u.cert, digest, VerifyOptions{Now: now})
}

// result is what the image record keeps of a successful verification.
func (u *uploadSignature) result() *SignatureResult {
	if u == nil {
		return nil
	}
	return &SignatureResult{Verified: true, Fingerprint: u.spec.Fingerprint()}
}

// killUpload ends an upload whose signature did not verify: the image goes
// to killed with the reason (a deliberate difference from Glance Zed, which
// returns it to queued; see docs/compat.md), nothing refers to the chunks
// written (garbage for GC), and the caller gets Glance's 400.
func (s *Service) killUpload(id string, ref *UploadRef, u *uploadSignature, cause error) error {
	reason := cause.Error()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Update(ctx, id, func(img *Image) error {
		if img.Status != StatusSaving || img.Upload == nil || *img.Upload != *ref {
			return errAbandon
		}
		img.Status = StatusKilled
		img.Size, img.VirtualSize = nil, nil
		img.Upload = nil
		img.Signature = &SignatureResult{Verified: false, Reason: reason, Fingerprint: u.spec.Fingerprint()}
		return nil
	})
	switch {
	case errors.Is(err, errAbandon):
		s.log.Warn("signature verification failed; the upload no longer owns the image", "image", id, "reason", reason)
	case err != nil:
		// The image stays in saving; RecoverUploads returns it to queued.
		s.log.Error("signature verification failed; could not kill the image", "image", id, "reason", reason, "err", err)
	default:
		s.log.Error("signature verification failed; image killed", "image", id, "reason", reason,
			"certificate", u.spec.CertificateID, "key_type", u.spec.KeyType, "hash_method", u.spec.HashMethod)
	}
	return Errorf(ErrInvalid, "Signature verification failed for image %s: %s", id, reason)
}

// checkSignatureEdit refuses a create or update that writes an unusable
// img_signature* value (an unsupported key type or hash method, bad base64).
// Incomplete sets are allowed here (clients may set the properties over
// several requests); the upload refuses them.
func checkSignatureEdit(before, after *Image) error {
	if !HasSignatureProperties(after.Properties) {
		return nil
	}
	if before != nil {
		changed := false
		for _, k := range SignatureProperties {
			a, aok := before.Properties[k]
			b, bok := after.Properties[k]
			changed = changed || a != b || aok != bok
		}
		if !changed {
			return nil
		}
	}
	return CheckSignatureProperties(after.Properties)
}

// Signature status values, as the mount's user.mosaic.signature xattr and
// `mosaic verify` report them; a detail may follow after ": ".
const (
	SignatureUnsigned   = "unsigned"
	SignatureVerified   = "verified"
	SignatureFailed     = "failed"
	SignatureUnverified = "unverified"
)

// SignatureStatus describes an image's signature from its record alone:
// unsigned; verified (at upload, and the properties are the ones verified);
// failed (with the reason); or unverified (the properties changed after the
// upload verified them, or are incomplete).
func SignatureStatus(img *Image) string {
	if !HasSignatureProperties(img.Properties) {
		return SignatureUnsigned
	}
	spec, err := ParseSignatureSpec(img.Properties)
	if err != nil {
		msg, _ := UserMessage(err)
		return SignatureUnverified + ": " + msg
	}
	r := img.Signature
	switch {
	case r == nil:
		return SignatureUnverified + ": the signature was not checked at upload"
	case r.Fingerprint != spec.Fingerprint():
		return SignatureUnverified + ": the signature properties changed after the upload was verified"
	case !r.Verified:
		return SignatureFailed + ": " + r.Reason
	}
	return SignatureVerified + ": at upload"
}

// StoredDigest re-reads an image's content from the chunk store (every
// chunk verified against its BLAKE3 ID) and returns its digest with h.
func (s *Service) StoredDigest(ctx context.Context, img *Image, h crypto.Hash) ([]byte, int64, error) {
	if !img.HasData() {
		return nil, 0, ErrNoData
	}
	m, err := s.Manifest(ctx, img.ManifestRoot)
	if err != nil {
		return nil, 0, fmt.Errorf("digest of image %s: %w", img.ID, err)
	}
	hw := h.New()
	n, err := streamChunks(ctx, s.chunks, m, hw)
	if err != nil {
		return nil, n, fmt.Errorf("digest of image %s: %w", img.ID, err)
	}
	return hw.Sum(nil), n, nil
}

// streamWindow is how many chunks streamChunks fetches ahead of the writer.
const streamWindow = 8

// streamChunks writes a manifest's content to w in order, fetching up to
// streamWindow chunks ahead in parallel with the writer (which hashes). It
// bypasses the shared chunk cache (a full pass would only evict what
// readers cache) and reuses its buffers. Every chunk is verified by the
// store against its ID.
func streamChunks(ctx context.Context, store ChunkStore, m *Manifest, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		buf  []byte
		data []byte
		err  error
	}
	slots := make([]chan result, streamWindow)
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	free := make(chan []byte, streamWindow)
	fetch := func(i int) {
		c := m.Chunks[i]
		if c.ID.IsZero() {
			slots[i%streamWindow] <- result{}
			return
		}
		var buf []byte
		select {
		case buf = <-free:
		default:
		}
		data, err := store.Get(ctx, c.ID, buf)
		if err == nil && len(data) != int(c.Size) {
			err = &CorruptError{ID: c.ID, Got: SumChunk(data)}
		}
		if err != nil {
			err = fmt.Errorf("read chunk %s at offset %d: %w", c.ID, c.Offset, err)
		}
		slots[i%streamWindow] <- result{buf: data, data: data, err: err}
	}
	next := 0
	for ; next < min(streamWindow, len(m.Chunks)); next++ {
		go fetch(next)
	}
	var written int64
	for i, c := range m.Chunks {
		if err := ctx.Err(); err != nil {
			return written, err
		}
		r := <-slots[i%streamWindow]
		if r.err != nil {
			return written, r.err // outstanding fetches land in their buffered slots
		}
		var err error
		if c.ID.IsZero() {
			for left := int64(c.Size); left > 0 && err == nil; {
				k := min(left, int64(len(zeroBuf)))
				_, err = w.Write(zeroBuf[:k])
				left -= k
			}
		} else {
			_, err = w.Write(r.data)
		}
		if err != nil {
			return written, err
		}
		written += int64(c.Size)
		if r.buf != nil {
			select {
			case free <- r.buf[:0]:
			default:
			}
		}
		if next < len(m.Chunks) {
			go fetch(next)
			next++
		}
	}
	return written, nil
}

// VerifyStored verifies a signed image's stored content: it re-reads every
// chunk, recomputes the signature digest and checks the signature and the
// certificate (dates; chain when o.Trusted is set), fetching the
// certificate with the context's rights. It returns (nil, nil) for an
// unsigned image, the spec it checked otherwise. A failed check is an error
// matching ErrInvalid (*SignatureError) or ErrCorrupt (a chunk failed its
// BLAKE3 check); other errors are transient.
func (s *Service) VerifyStored(ctx context.Context, img *Image, o VerifyOptions) (*SignatureSpec, *x509.Certificate, error) {
	spec, err := ParseSignatureSpec(img.Properties)
	if err != nil {
		msg, _ := UserMessage(err)
		return nil, nil, &SignatureError{Reason: msg}
	}
	if spec == nil {
		return nil, nil, nil
	}
	if s.cfg.Certificates == nil {
		return spec, nil, errors.New("verify: no key manager to read certificates from")
	}
	cert, err := s.cfg.Certificates.Certificate(ctx, spec.CertificateID)
	if err != nil {
		return spec, nil, err
	}
	if err := spec.CheckKey(cert); err != nil {
		return spec, cert, err
	}
	digest, _, err := s.StoredDigest(ctx, img, spec.Hash)
	if err != nil {
		return spec, cert, err
	}
	return spec, cert, spec.Verify(cert, digest, o)
}
