package engine

import (
	"crypto"
	"crypto/dsa" //nolint:staticcheck // DSA signatures are part of what Glance accepts
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func sigProps(sig []byte, method, keyType, cert string) map[string]string {
	return map[string]string{
		PropSignature: base64.StdEncoding.EncodeToString(sig), PropSignatureHashMethod: method,
		PropSignatureKeyType: keyType, PropSignatureCertUUID: cert,
	}
}

func TestParseSignatureSpec(t *testing.T) {
	full := sigProps([]byte("sig"), "SHA-256", "RSA-PSS", "7b1fd5f2-0000-4000-8000-000000000001")
	without := func(k string) map[string]string {
		m := map[string]string{}
		for kk, v := range full {
			if kk != k {
				m[kk] = v
			}
		}
		return m
	}
	with := func(k, v string) map[string]string {
		m := without(k)
		m[k] = v
		return m
	}
	cases := []struct {
		name  string
		props map[string]string
		want  string // substring of the error; "" = ok
	}{
		{"complete", full, ""},
		{"newlines in base64", with(PropSignature, "c2\nln\n"), ""},
		{"missing certificate", without(PropSignatureCertUUID), "incomplete: img_signature_certificate_uuid missing"},
		{"missing signature", without(PropSignature), "incomplete: img_signature missing"},
		{"bad base64", with(PropSignature, "not base64!"), "not properly encoded using base64"},
		{"empty signature", with(PropSignature, ""), "empty"},
		{"unknown hash", with(PropSignatureHashMethod, "MD5"), "Invalid signature hash method: MD5"},
		{"binary curve", with(PropSignatureKeyType, "ECC_SECT571K1"), "binary-field elliptic curves are not supported by Mosaic (supported key types: RSA-PSS, DSA, ECC_SECP384R1, ECC_SECP521R1)"},
		{"binary curve r", with(PropSignatureKeyType, "ECC_SECT409R1"), "ECC_SECT409R1: binary-field"},
		{"unknown key type", with(PropSignatureKeyType, "ECC-CURVES"), "Invalid signature key type: ECC-CURVES (supported key types: RSA-PSS"},
		{"empty cert", with(PropSignatureCertUUID, " "), "img_signature_certificate_uuid: empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec, err := ParseSignatureSpec(c.props)
			if c.want == "" {
				if err != nil || spec == nil {
					t.Fatalf("got %v, %v", spec, err)
				}
				return
			}
			msg, user := UserMessage(err)
			if !errors.Is(err, ErrInvalid) || !user || !strings.Contains(msg, c.want) {
				t.Fatalf("error %v (user message %q), want ErrInvalid containing %q", err, msg, c.want)
			}
		})
	}
	if spec, err := ParseSignatureSpec(map[string]string{"os_distro": "debian"}); spec != nil || err != nil {
		t.Fatalf("unsigned image: %v, %v", spec, err)
	}
	// Values are checked as they are written, even before the set is complete.
	if err := CheckSignatureProperties(map[string]string{PropSignatureKeyType: "ECC_SECT571R1"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("partial set with a binary curve: %v", err)
	}
	if err := CheckSignatureProperties(map[string]string{PropSignatureKeyType: "DSA"}); err != nil {
		t.Fatalf("partial valid set: %v", err)
	}
}

// selfSigned makes a certificate for pub signed by signer (self-signed
// when parent is nil).
func selfSigned(t *testing.T, pub any, signer crypto.Signer, parent *x509.Certificate, ca bool, from, to time.Time) *x509.Certificate {
	t.Helper()
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "signer " + serial.String()},
		NotBefore: from, NotAfter: to, BasicConstraintsValid: true, IsCA: ca,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func digestOf(h crypto.Hash, data []byte) []byte {
	w := h.New()
	w.Write(data)
	return w.Sum(nil)
}

func TestVerifyDigestPerKeyType(t *testing.T) {
	data := []byte("the exact bytes that were uploaded")
	now := time.Now()
	from, to := now.Add(-time.Hour), now.Add(time.Hour)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := selfSigned(t, &rsaKey.PublicKey, rsaKey, nil, false, from, to)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384Cert := selfSigned(t, &p384.PublicKey, p384, nil, false, from, to)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	p521Cert := selfSigned(t, &p521.PublicKey, p521, nil, false, from, to)
	// Go cannot create DSA certificates; a DSA key in a certificate is
	// covered by the openssl tests (testing/signing). Here the key alone.
	var dsaKey dsa.PrivateKey
	if err := dsa.GenerateParameters(&dsaKey.Parameters, rand.Reader, dsa.L2048N256); err != nil {
		t.Fatal(err)
	}
	if err := dsa.GenerateKey(&dsaKey, rand.Reader); err != nil {
		t.Fatal(err)
	}
	dsaCert := &x509.Certificate{PublicKey: &dsaKey.PublicKey, PublicKeyAlgorithm: x509.DSA, NotBefore: from, NotAfter: to}

	for _, method := range []string{"SHA-224", "SHA-256", "SHA-384", "SHA-512"} {
		h := signatureHashes[method]
		d := digestOf(h, data)
		maxSalt := (rsaKey.N.BitLen()-1+7)/8 - h.Size() - 2
		pssMax, _ := rsa.SignPSS(rand.Reader, rsaKey, h, d, &rsa.PSSOptions{SaltLength: maxSalt, Hash: h})
		pssDigestSalt, _ := rsa.SignPSS(rand.Reader, rsaKey, h, d, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: h})
		ec384, _ := ecdsa.SignASN1(rand.Reader, p384, d)
		ec521, _ := ecdsa.SignASN1(rand.Reader, p521, d)
		r, s, _ := dsa.Sign(rand.Reader, &dsaKey, d[:min(len(d), 32)])
		dsaSig, _ := asn1.Marshal(struct{ R, S *big.Int }{r, s})

		cases := []struct {
			name    string
			keyType string
			cert    *x509.Certificate
			sig     []byte
			ok      bool
		}{
			{"rsa-pss max salt", KeyTypeRSAPSS, rsaCert, pssMax, true},
			// cursive verifies with the maximum salt length only.
			{"rsa-pss digest-length salt", KeyTypeRSAPSS, rsaCert, pssDigestSalt, false},
			{"ecc p384", KeyTypeECCSECP384R1, p384Cert, ec384, true},
			{"ecc p521", KeyTypeECCSECP521R1, p521Cert, ec521, true},
			{"ecc other key", KeyTypeECCSECP384R1, p384Cert, ec521, false},
			{"dsa", KeyTypeDSA, dsaCert, dsaSig, true},
			{"dsa garbage", KeyTypeDSA, dsaCert, []byte{0x30, 0x01, 0x00}, false},
		}
		for _, c := range cases {
			spec := &SignatureSpec{Signature: c.sig, HashMethod: method, Hash: h, KeyType: c.keyType}
			err := spec.VerifyDigest(c.cert, d)
			if c.ok != (err == nil) {
				t.Errorf("%s %s: %v, want ok=%v", method, c.name, err, c.ok)
			}
			if c.ok {
				other := digestOf(h, append([]byte("x"), data...))
				if err := spec.VerifyDigest(c.cert, other); err == nil || !strings.Contains(err.Error(), "Signature verification failed") {
					t.Errorf("%s %s over other content: %v", method, c.name, err)
				}
			}
		}
	}
	spec := &SignatureSpec{Signature: []byte("x"), HashMethod: "SHA-256", Hash: crypto.SHA256, KeyType: KeyTypeRSAPSS}
	if err := spec.VerifyDigest(p384Cert, digestOf(crypto.SHA256, data)); err == nil || !strings.Contains(err.Error(), "Invalid public key type for signature key type: RSA-PSS") {
		t.Fatalf("RSA-PSS with an EC certificate: %v", err)
	}
	if err := spec.VerifyDigest(rsaCert, []byte("short")); err == nil {
		t.Fatal("a digest of the wrong length verified")
	}
}

func TestCertificateDatesAndChain(t *testing.T) {
	now := time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)
	caKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	ca := selfSigned(t, &caKey.PublicKey, caKey, nil, true, now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0))
	leafKey, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	leaf := selfSigned(t, &leafKey.PublicKey, caKey, ca, false, now.Add(-time.Hour), now.Add(time.Hour))
	stranger := selfSigned(t, &leafKey.PublicKey, leafKey, nil, false, now.Add(-time.Hour), now.Add(time.Hour))

	if err := CheckCertificateDates(leaf, now); err != nil {
		t.Fatal(err)
	}
	if err := CheckCertificateDates(leaf, now.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired at 2030-06-01T13:00:00Z") {
		t.Fatalf("expired: %v", err)
	}
	if err := CheckCertificateDates(leaf, now.Add(-2*time.Hour)); err == nil || !strings.Contains(err.Error(), "not valid yet") {
		t.Fatalf("not yet valid: %v", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if err := VerifyChain(leaf, roots, nil, now); err != nil {
		t.Fatalf("leaf under the trusted CA: %v", err)
	}
	if err := VerifyChain(stranger, roots, nil, now); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Fatalf("self-signed stranger: %v", err)
	}
	if err := VerifyChain(leaf, roots, nil, now.AddDate(2, 0, 0)); err == nil {
		t.Fatal("a chain verified after the certificates expired")
	}
	self := x509.NewCertPool()
	self.AddCert(stranger)
	if err := VerifyChain(stranger, self, nil, now); err != nil {
		t.Fatalf("a self-signed certificate trusted by itself: %v", err)
	}

	// Verify combines key type, dates, chain and signature.
	d := digestOf(crypto.SHA384, []byte("content"))
	sig, _ := ecdsa.SignASN1(rand.Reader, leafKey, d)
	spec := &SignatureSpec{Signature: sig, HashMethod: "SHA-384", Hash: crypto.SHA384, KeyType: KeyTypeECCSECP384R1}
	if err := spec.Verify(leaf, d, VerifyOptions{Now: now, Trusted: roots}); err != nil {
		t.Fatal(err)
	}
	if err := spec.Verify(leaf, d, VerifyOptions{Now: now.Add(3 * time.Hour)}); err == nil {
		t.Fatal("verified with an expired certificate")
	}
}

func TestSignatureStatusFromRecord(t *testing.T) {
	props := sigProps([]byte("sig"), "SHA-256", "RSA-PSS", "c1")
	spec, _ := ParseSignatureSpec(props)
	img := &Image{Properties: props}
	cases := []struct {
		res  *SignatureResult
		want string
	}{
		{nil, "unverified: the signature was not checked at upload"},
		{&SignatureResult{Verified: true, Fingerprint: spec.Fingerprint()}, "verified: at upload"},
		{&SignatureResult{Verified: true, Fingerprint: "other"}, "unverified: the signature properties changed"},
		{&SignatureResult{Reason: "Signature verification failed", Fingerprint: spec.Fingerprint()}, "failed: Signature verification failed"},
	}
	for _, c := range cases {
		img.Signature = c.res
		if got := SignatureStatus(img); !strings.HasPrefix(got, c.want) {
			t.Errorf("%+v: %q, want %q", c.res, got, c.want)
		}
	}
	if got := SignatureStatus(&Image{}); got != SignatureUnsigned {
		t.Errorf("unsigned: %q", got)
	}
	if got := SignatureStatus(&Image{Properties: map[string]string{PropSignature: "c2ln"}}); !strings.HasPrefix(got, "unverified: Image signature properties are incomplete") {
		t.Errorf("incomplete: %q", got)
	}
}
