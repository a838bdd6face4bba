package engine

import (
	"crypto"
	"crypto/dsa" //nolint:staticcheck // Glance accepts DSA signatures; Go keeps crypto/dsa for verification.
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Image properties that carry a signature, as Glance and cursive name them.
const (
	PropSignature           = "img_signature"
	PropSignatureHashMethod = "img_signature_hash_method"
	PropSignatureKeyType    = "img_signature_key_type"
	PropSignatureCertUUID   = "img_signature_certificate_uuid"
)

// SignatureProperties lists the four properties in Glance's order.
var SignatureProperties = []string{PropSignature, PropSignatureHashMethod, PropSignatureKeyType, PropSignatureCertUUID}

// Signature key types Mosaic verifies (img_signature_key_type).
const (
	KeyTypeRSAPSS        = "RSA-PSS"
	KeyTypeDSA           = "DSA"
	KeyTypeECCSECP384R1  = "ECC_SECP384R1"
	KeyTypeECCSECP521R1  = "ECC_SECP521R1"
	supportedKeyTypeList = "RSA-PSS, DSA, ECC_SECP384R1, ECC_SECP521R1"
)

// SupportedKeyTypes are the img_signature_key_type values Mosaic verifies.
var SupportedKeyTypes = []string{KeyTypeRSAPSS, KeyTypeDSA, KeyTypeECCSECP384R1, KeyTypeECCSECP521R1}

// binaryCurveKeyTypes are key types Glance accepts (cursive registers them
// when OpenSSL has the curve) but Go's standard library cannot verify.
var binaryCurveKeyTypes = []string{"ECC_SECT571K1", "ECC_SECT409K1", "ECC_SECT571R1", "ECC_SECT409R1"}

// signatureHashes maps img_signature_hash_method values to hashes.
var signatureHashes = map[string]crypto.Hash{
	"SHA-224": crypto.SHA224,
	"SHA-256": crypto.SHA256,
	"SHA-384": crypto.SHA384,
	"SHA-512": crypto.SHA512,
}

// SignatureError is a signature that cannot be verified, with the reason
// (in cursive's words where it has them). It matches ErrInvalid.
type SignatureError struct {
	Reason string
}

func (e *SignatureError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *SignatureError) Is(target error) bool { return target == ErrInvalid }

func sigErrorf(format string, args ...any) error {
	return &SignatureError{Reason: fmt.Sprintf(format, args...)}
}

// SignatureSpec is an image's parsed img_signature* properties.
type SignatureSpec struct {
	Signature     []byte
	HashMethod    string // as written: SHA-256...
	Hash          crypto.Hash
	KeyType       string
	CertificateID string
}

// HasSignatureProperties reports whether any img_signature* property is set.
func HasSignatureProperties(props map[string]string) bool {
	for _, k := range SignatureProperties {
		if _, ok := props[k]; ok {
			return true
		}
	}
	return false
}

// ParseSignatureSpec reads an image's signature properties. It returns
// (nil, nil) when none is set, and an error matching ErrInvalid (with a
// user message) when only some are set or a value is not supported. Unlike
// Glance, which skips verification silently when a property is missing,
// Mosaic refuses such an upload: a half-signed image is a mistake.
func ParseSignatureSpec(props map[string]string) (*SignatureSpec, error) {
	if !HasSignatureProperties(props) {
		return nil, nil
	}
	var missing []string
	for _, k := range SignatureProperties {
		if _, ok := props[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, Errorf(ErrInvalid, "Image signature properties are incomplete: %s missing. Set all four of %s, or none.",
			strings.Join(missing, ", "), strings.Join(SignatureProperties, ", "))
	}
	if err := CheckSignatureProperties(props); err != nil {
		return nil, err
	}
	sig, _ := decodeSignature(props[PropSignature])
	method := props[PropSignatureHashMethod]
	return &SignatureSpec{
		Signature: sig, HashMethod: method, Hash: signatureHashes[method],
		KeyType: props[PropSignatureKeyType], CertificateID: props[PropSignatureCertUUID],
	}, nil
}

// CheckSignatureProperties checks the values of whichever signature
// properties are set (a client may set them over several requests), so that
// a value that can never verify is refused when it is written. Errors match
// ErrInvalid and carry a user message.
func CheckSignatureProperties(props map[string]string) error {
	if v, ok := props[PropSignature]; ok {
		if _, err := decodeSignature(v); err != nil {
			return Errorf(ErrInvalid, "Invalid %s: %v", PropSignature, err)
		}
	}
	if v, ok := props[PropSignatureHashMethod]; ok {
		if _, ok := signatureHashes[v]; !ok {
			return Errorf(ErrInvalid, "Invalid signature hash method: %s (supported: SHA-224, SHA-256, SHA-384, SHA-512)", v)
		}
	}
	if v, ok := props[PropSignatureKeyType]; ok {
		switch {
		case slices.Contains(SupportedKeyTypes, v):
		case slices.Contains(binaryCurveKeyTypes, v):
			return Errorf(ErrInvalid, "Invalid signature key type: %s: binary-field elliptic curves are not supported by Mosaic (supported key types: %s)", v, supportedKeyTypeList)
		default:
			return Errorf(ErrInvalid, "Invalid signature key type: %s (supported key types: %s)", v, supportedKeyTypeList)
		}
	}
	if v, ok := props[PropSignatureCertUUID]; ok && strings.TrimSpace(v) == "" {
		return Errorf(ErrInvalid, "Invalid %s: empty", PropSignatureCertUUID)
	}
	return nil
}

// decodeSignature decodes img_signature as oslo's decode_as_bytes does:
// standard base64, whitespace and newlines ignored.
func decodeSignature(s string) ([]byte, error) {
	clean := strings.Map(func(r rune) rune {
		if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
			return -1
		}
		return r
	}, s)
	b, err := base64.StdEncoding.DecodeString(clean)
	if err != nil {
		return nil, errors.New("the signature data was not properly encoded using base64")
	}
	if len(b) == 0 {
		return nil, errors.New("the signature is empty")
	}
	return b, nil
}

// Fingerprint identifies the four property values, so a recorded
// verification can be matched to the properties it checked.
func (s *SignatureSpec) Fingerprint() string {
	h := sha256.New()
	for _, v := range []string{s.HashMethod, s.KeyType, s.CertificateID} {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	h.Write(s.Signature)
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// CheckKey checks that the certificate's public key is of the declared key
// type (cursive's get_public_key). As cursive, any ECC_* type accepts an
// ECDSA key on any curve Go supports: the type names the scheme, the
// certificate the curve.
func (s *SignatureSpec) CheckKey(cert *x509.Certificate) error {
	ok := false
	switch s.KeyType {
	case KeyTypeRSAPSS:
		_, ok = cert.PublicKey.(*rsa.PublicKey)
	case KeyTypeDSA:
		_, ok = cert.PublicKey.(*dsa.PublicKey)
	case KeyTypeECCSECP384R1, KeyTypeECCSECP521R1:
		_, ok = cert.PublicKey.(*ecdsa.PublicKey)
	}
	if !ok {
		return sigErrorf("Invalid public key type for signature key type: %s (the certificate's key is %s)", s.KeyType, cert.PublicKeyAlgorithm)
	}
	return nil
}

// CheckCertificateDates checks that now lies within the certificate's
// validity period. Glance does not check it; Mosaic does, at every
// verification.
func CheckCertificateDates(cert *x509.Certificate, now time.Time) error {
	const layout = "2006-01-02T15:04:05Z"
	if now.Before(cert.NotBefore) {
		return sigErrorf("Certificate %q is not valid yet: valid from %s, checked at %s",
			cert.Subject.String(), cert.NotBefore.UTC().Format(layout), now.UTC().Format(layout))
	}
	if now.After(cert.NotAfter) {
		return sigErrorf("Certificate %q expired at %s, checked at %s",
			cert.Subject.String(), cert.NotAfter.UTC().Format(layout), now.UTC().Format(layout))
	}
	return nil
}

// VerifyChain checks that cert chains to one of the trusted certificates at
// now (validity dates of every certificate, CA constraints and signatures),
// as Nova's certificate validation does. intermediates may be nil.
func VerifyChain(cert *x509.Certificate, trusted, intermediates *x509.CertPool, now time.Time) error {
	_, err := cert.Verify(x509.VerifyOptions{
		Roots: trusted, Intermediates: intermediates, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return sigErrorf("Certificate %q does not chain to a trusted certificate: %v",
			cert.Subject.String(), strings.TrimPrefix(err.Error(), "x509: "))
	}
	return nil
}

// VerifyDigest verifies the signature over a digest of the content made
// with s.Hash, with cert's public key, exactly as cursive does: RSA-PSS with
// MGF1 over the same hash and the maximum salt length; ECDSA and DSA with
// DER-encoded (r, s).
func (s *SignatureSpec) VerifyDigest(cert *x509.Certificate, digest []byte) error {
	if err := s.CheckKey(cert); err != nil {
		return err
	}
	if len(digest) != s.Hash.Size() {
		return sigErrorf("digest of %d bytes for %s", len(digest), s.HashMethod)
	}
	ok := false
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		// cryptography's PSS.MAX_LENGTH: emLen - hLen - 2.
		salt := (pub.N.BitLen()-1+7)/8 - s.Hash.Size() - 2
		if salt < 0 {
			return sigErrorf("RSA key of %d bits is too small for %s", pub.N.BitLen(), s.HashMethod)
		}
		ok = rsa.VerifyPSS(pub, s.Hash, digest, s.Signature, &rsa.PSSOptions{SaltLength: salt, Hash: s.Hash}) == nil
	case *ecdsa.PublicKey:
		ok = ecdsa.VerifyASN1(pub, digest, s.Signature)
	case *dsa.PublicKey:
		var rs struct{ R, S *big.Int }
		rest, err := asn1.Unmarshal(s.Signature, &rs)
		if err == nil && len(rest) == 0 && rs.R != nil && rs.S != nil {
			// FIPS 186-3 4.6: the leftmost bytes of the digest, as many
			// as the subgroup order has (OpenSSL truncates the same way).
			d := digest[:min(len(digest), (pub.Q.BitLen()+7)/8)]
			ok = dsa.Verify(pub, d, rs.R, rs.S)
		}
	}
	if !ok {
		return sigErrorf("Signature verification failed: the signature does not match the %s digest of the content under the certificate's %s key",
			s.HashMethod, cert.PublicKeyAlgorithm)
	}
	return nil
}

// VerifyOptions tune a verification.
type VerifyOptions struct {
	// Now is the time certificate dates are checked at; zero means now.
	Now time.Time
	// Trusted, if set, requires the certificate to chain to one of these
	// (and Intermediates may supply the links).
	Trusted       *x509.CertPool
	Intermediates *x509.CertPool
}

// Verify checks everything about a signature but the digest's origin: the
// key type, the certificate's dates (and chain, when trusted roots are
// given), and the signature over digest.
func (s *SignatureSpec) Verify(cert *x509.Certificate, digest []byte, o VerifyOptions) error {
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	if err := s.CheckKey(cert); err != nil {
		return err
	}
	if err := CheckCertificateDates(cert, now); err != nil {
		return err
	}
	if o.Trusted != nil {
		if err := VerifyChain(cert, o.Trusted, o.Intermediates, now); err != nil {
			return err
		}
	}
	return s.VerifyDigest(cert, digest)
}
