package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// memSecrets is a SecretStore in a map, for the key manager's own logic;
// raftmeta's implementation has its own tests.
type memSecrets struct {
	mu sync.Mutex
	m  map[string]*Secret
}

func (s *memSecrets) GetSecret(ctx context.Context, id string) (*Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	if !ok {
		return nil, fmt.Errorf("secret %s: %w", id, ErrNotFound)
	}
	return v.Clone(), nil
}

func (s *memSecrets) ListSecrets(ctx context.Context, match func(*Secret) bool) ([]*Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Secret
	for _, v := range s.m {
		if match(v) {
			out = append(out, v.Clone())
		}
	}
	slices.SortFunc(out, func(a, b *Secret) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (s *memSecrets) CreateSecret(ctx context.Context, v *Secret) (*Secret, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[v.ID]; ok {
		return nil, ErrExists
	}
	s.m[v.ID] = v.Clone()
	return v.Clone(), nil
}

func (s *memSecrets) DeleteSecret(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; !ok {
		return ErrNotFound
	}
	delete(s.m, id)
	return nil
}

func certPEM(t *testing.T) []byte {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	c := selfSigned(t, &k.PublicKey, k, nil, false, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func TestDefaultSecretPolicy(t *testing.T) {
	own := &Secret{ProjectID: "p1"}
	other := &Secret{ProjectID: "p2"}
	member := &Caller{ProjectID: "p1", Roles: []string{"member", "reader"}}
	reader := &Caller{ProjectID: "p1", Roles: []string{"reader"}}
	nobody := &Caller{ProjectID: "p1"}
	admin := &Caller{ProjectID: "p9", Roles: []string{"admin"}, IsAdmin: true}
	cases := []struct {
		c      *Caller
		action SecretAction
		s      *Secret
		want   error // nil, ErrForbidden or ErrNotFound
	}{
		{nil, SecretActionDelete, other, nil},
		{NoAuthCaller(), SecretActionDelete, other, nil},
		{admin, SecretActionDecrypt, other, nil},
		{member, SecretActionCreate, own, nil},
		{member, SecretActionDecrypt, own, nil},
		{member, SecretActionDelete, own, nil},
		{member, SecretActionGet, other, ErrNotFound},
		{member, SecretActionDelete, other, ErrNotFound},
		{member, SecretActionCreate, other, ErrForbidden},
		{reader, SecretActionGet, own, nil},
		{reader, SecretActionDecrypt, own, nil},
		{reader, SecretActionList, nil, nil},
		{reader, SecretActionCreate, own, ErrForbidden},
		{reader, SecretActionDelete, own, ErrForbidden},
		{nobody, SecretActionGet, own, ErrForbidden},
	}
	for i, c := range cases {
		err := DefaultSecretPolicy(c.c, c.action, c.s)
		if (c.want == nil) != (err == nil) || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("case %d (%+v %s): %v, want %v", i, c.c, c.action, err, c.want)
		}
	}
}

func TestKeyManager(t *testing.T) {
	now := time.Now()
	n := 0
	km := NewKeyManager(&memSecrets{m: map[string]*Secret{}}, KeyManagerConfig{
		Now:   func() time.Time { return now },
		NewID: func() string { n++; return fmt.Sprintf("00000000-0000-4000-8000-%012d", n) },
	})
	p1 := WithCaller(context.Background(), &Caller{ProjectID: "p1", UserID: "u1", Roles: []string{"member"}})
	p2 := WithCaller(context.Background(), &Caller{ProjectID: "p2", Roles: []string{"member"}})
	pemCert := certPEM(t)

	bad := []struct {
		s    Secret
		want string
	}{
		{Secret{SecretType: "symmetric", Payload: []byte("k")}, "secret_type 'symmetric' is not supported"},
		{Secret{Payload: []byte("k")}, "secret_type is required"},
		{Secret{SecretType: SecretTypeCertificate}, "must be non empty"},
		{Secret{SecretType: SecretTypeCertificate, Payload: []byte("not a certificate")}, "must be an X.509 certificate"},
		{Secret{SecretType: SecretTypePublic, Payload: pemCert}, "must be a public key"},
		{Secret{SecretType: SecretTypeCertificate, Payload: make([]byte, MaxSecretPayload+1)}, "too large"},
	}
	for _, b := range bad {
		if _, err := km.Create(p1, &b.s); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("create %q: %v, want %q", b.s.SecretType, err, b.want)
		}
	}
	past := now.Add(-time.Minute)
	if _, err := km.Create(p1, &Secret{SecretType: SecretTypeCertificate, Payload: pemCert, Expiration: &past}); err == nil {
		t.Error("a secret expiring in the past was stored")
	}

	soon := now.Add(time.Hour)
	a, err := km.Create(p1, &Secret{Name: "a", SecretType: SecretTypeCertificate, Payload: pemCert, ContentType: "text/plain"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ProjectID != "p1" || a.CreatorID != "u1" || a.ID == "" {
		t.Fatalf("stored %+v", a)
	}
	block, _ := pem.Decode(pemCert)
	b, err := km.Create(p1, &Secret{Name: "b", SecretType: SecretTypeCertificate, Payload: block.Bytes, Expiration: &soon})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := km.Create(p2, &Secret{Name: "c", SecretType: SecretTypeCertificate, Payload: pemCert}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		cert, err := km.Certificate(p1, id)
		if err != nil || cert.Subject.CommonName == "" {
			t.Fatalf("certificate %s (PEM or DER): %v", id, err)
		}
	}
	if _, err := km.Get(p2, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another project's secret: %v", err)
	}
	var se *SignatureError
	if _, err := km.Certificate(p2, a.ID); !errors.As(err, &se) || !strings.Contains(se.Reason, "Certificate not found with ID: "+a.ID) {
		t.Fatalf("another project's certificate: %v", err)
	}
	list, err := km.List(p1, SecretFilter{})
	if err != nil || len(list) != 2 {
		t.Fatalf("list p1: %d secrets, %v", len(list), err)
	}
	if list, _ := km.List(p1, SecretFilter{Name: "b"}); len(list) != 1 || list[0].ID != b.ID {
		t.Fatalf("list by name: %v", list)
	}
	if list, _ := km.List(context.Background(), SecretFilter{}); len(list) != 3 {
		t.Fatalf("the system sees %d secrets, want 3", len(list))
	}
	// Expired secrets are gone.
	now = now.Add(2 * time.Hour)
	if _, err := km.Get(p1, b.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired secret: %v", err)
	}
	if err := km.Delete(p2, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete another project's secret: %v", err)
	}
	if err := km.Delete(p1, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := km.Payload(p1, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted secret: %v", err)
	}
	// A public-key secret is not a certificate.
	pub, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&pub.PublicKey)
	pk, err := km.Create(p1, &Secret{SecretType: SecretTypePublic, Payload: der})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := km.Certificate(p1, pk.ID); !errors.As(err, &se) || !strings.Contains(se.Reason, "Invalid certificate format") {
		t.Fatalf("certificate from a public key secret: %v", err)
	}
}
