package engine

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Secret types the key manager accepts. Barbican knows more (symmetric,
// private, passphrase, opaque); Mosaic stores payloads unencrypted in the
// Raft log, so it keeps only public material: what image signing needs.
const (
	SecretTypeCertificate = "certificate"
	SecretTypePublic      = "public"
)

// MaxSecretPayload is Barbican's max_allowed_secret_in_bytes default.
const MaxSecretPayload = 10000

// SecretAction is what a caller asks to do with secrets, named as
// Barbican's policy rules.
type SecretAction string

// Secret actions.
const (
	SecretActionCreate  SecretAction = "secrets:post"
	SecretActionList    SecretAction = "secrets:get"
	SecretActionGet     SecretAction = "secret:get"
	SecretActionDecrypt SecretAction = "secret:decrypt"
	SecretActionDelete  SecretAction = "secret:delete"
)

// SecretPolicy decides whether caller c may perform action on secret s
// (for create, s is the secret about to be stored; for list, s is nil and
// each listed secret is then checked with SecretActionGet). It returns nil,
// or an error matching ErrForbidden or ErrNotFound (a secret the caller may
// not even know exists). A nil Caller is the system and may do anything.
type SecretPolicy func(c *Caller, action SecretAction, s *Secret) error

// KeyManagerConfig configures a KeyManager.
type KeyManagerConfig struct {
	// Policy decides access; nil means DefaultSecretPolicy. The identity
	// and policy layer plugs its rules in here.
	Policy SecretPolicy
	// Now and NewID may be replaced in tests.
	Now   func() time.Time
	NewID func() string
}

// KeyManager is the key-manager domain: Barbican-style secrets scoped to
// projects, and the certificates image signing refers to. Safe for
// concurrent use.
type KeyManager struct {
	store SecretStore
	cfg   KeyManagerConfig
}

// NewKeyManager returns a key manager over store.
func NewKeyManager(store SecretStore, cfg KeyManagerConfig) *KeyManager {
	if cfg.Policy == nil {
		cfg.Policy = DefaultSecretPolicy
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return uuid.NewString() }
	}
	return &KeyManager{store: store, cfg: cfg}
}

func (km *KeyManager) authorize(ctx context.Context, action SecretAction, s *Secret) error {
	return km.cfg.Policy(CallerFrom(ctx), action, s)
}

// Create validates and stores a new secret for the caller's project.
// s carries the client's attributes and the decoded payload; ID, owner and
// timestamps are set here.
func (km *KeyManager) Create(ctx context.Context, s *Secret) (*Secret, error) {
	s = s.Clone()
	c := CallerFrom(ctx)
	s.ProjectID, s.CreatorID = "", ""
	if c != nil {
		s.ProjectID, s.CreatorID = c.ProjectID, c.UserID
	}
	if err := km.authorize(ctx, SecretActionCreate, s); err != nil {
		return nil, err
	}
	now := km.cfg.Now().UTC().Truncate(time.Second)
	if err := validateSecret(s, now); err != nil {
		return nil, err
	}
	s.ID = km.cfg.NewID()
	s.CreatedAt, s.UpdatedAt = now, now
	out, err := km.store.CreateSecret(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("store secret: %w", err)
	}
	return out, nil
}

func validateSecret(s *Secret, now time.Time) error {
	switch s.SecretType {
	case SecretTypeCertificate, SecretTypePublic:
	case "":
		return Errorf(ErrInvalid, "Provided object does not match schema 'Secret': secret_type is required: Mosaic's key manager stores only '%s' and '%s' secrets.", SecretTypeCertificate, SecretTypePublic)
	default:
		return Errorf(ErrInvalid, "Provided object does not match schema 'Secret': secret_type '%s' is not supported: Mosaic's key manager stores only '%s' and '%s' secrets (payloads are not encrypted at rest).", s.SecretType, SecretTypeCertificate, SecretTypePublic)
	}
	if len(s.Payload) == 0 {
		return Errorf(ErrInvalid, "Provided object does not match schema 'Secret': If 'payload' specified, must be non empty. Invalid property: 'payload'")
	}
	if len(s.Payload) > MaxSecretPayload {
		return Errorf(ErrTooLarge, "Provided information too large to process")
	}
	if s.Expiration != nil && !s.Expiration.After(now) {
		return Errorf(ErrInvalid, "Provided object does not match schema 'Secret': 'expiration' is before current time. Invalid property: 'expiration'")
	}
	switch s.SecretType {
	case SecretTypeCertificate:
		if _, err := ParseCertificate(s.Payload); err != nil {
			return Errorf(ErrInvalid, "Provided object does not match schema 'Secret': the payload of a certificate secret must be an X.509 certificate in PEM or DER: %v. Invalid property: 'payload'", err)
		}
	case SecretTypePublic:
		if _, err := parsePublicKey(s.Payload); err != nil {
			return Errorf(ErrInvalid, "Provided object does not match schema 'Secret': the payload of a public secret must be a public key in PEM or DER: %v. Invalid property: 'payload'", err)
		}
	}
	return nil
}

// ParseCertificate reads one X.509 certificate in PEM (the first
// CERTIFICATE block) or DER.
func ParseCertificate(b []byte) (*x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE", blk.Type)
		}
		b = blk.Bytes
	}
	cert, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "x509: "))
	}
	return cert, nil
}

func parsePublicKey(b []byte) (any, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	}
	k, err := x509.ParsePKIXPublicKey(b)
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "x509: "))
	}
	return k, nil
}

var errSecretNotFound = Errorf(ErrNotFound, "Not Found. Sorry but your secret is in another castle.")

// lookup returns a secret the caller may perform action on. Expired
// secrets are gone, as in Barbican.
func (km *KeyManager) lookup(ctx context.Context, id string, action SecretAction) (*Secret, error) {
	s, err := km.store.GetSecret(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, errSecretNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get secret %s: %w", id, err)
	}
	if s.Expired(km.cfg.Now()) {
		return nil, errSecretNotFound
	}
	if err := km.authorize(ctx, action, s); err != nil {
		return nil, err
	}
	return s, nil
}

// Get returns a secret's metadata and payload if the caller may read its
// metadata.
func (km *KeyManager) Get(ctx context.Context, id string) (*Secret, error) {
	return km.lookup(ctx, id, SecretActionGet)
}

// Payload returns a secret if the caller may read its payload.
func (km *KeyManager) Payload(ctx context.Context, id string) (*Secret, error) {
	return km.lookup(ctx, id, SecretActionDecrypt)
}

// SecretFilter selects secrets in a list; empty fields match everything.
type SecretFilter struct {
	Name       string
	SecretType string
	Algorithm  string
	Mode       string
	BitLength  int
}

func (f SecretFilter) match(s *Secret) bool {
	return (f.Name == "" || s.Name == f.Name) &&
		(f.SecretType == "" || s.SecretType == f.SecretType) &&
		(f.Algorithm == "" || s.Algorithm == f.Algorithm) &&
		(f.Mode == "" || s.Mode == f.Mode) &&
		(f.BitLength == 0 || s.BitLength == f.BitLength)
}

// List returns the unexpired secrets the caller may see that match f,
// oldest first (Barbican's order).
func (km *KeyManager) List(ctx context.Context, f SecretFilter) ([]*Secret, error) {
	if err := km.authorize(ctx, SecretActionList, nil); err != nil {
		return nil, err
	}
	c := CallerFrom(ctx)
	now := km.cfg.Now()
	out, err := km.store.ListSecrets(ctx, func(s *Secret) bool {
		return f.match(s) && !s.Expired(now) && km.cfg.Policy(c, SecretActionGet, s) == nil
	})
	if err != nil {
		return nil, fmt.Errorf("list secrets: %w", err)
	}
	sortSecrets(out)
	return out, nil
}

// sortSecrets orders by creation time, stable over the store's ID order.
func sortSecrets(ss []*Secret) {
	slices.SortStableFunc(ss, func(a, b *Secret) int { return a.CreatedAt.Compare(b.CreatedAt) })
}

// Delete removes a secret the caller may delete.
func (km *KeyManager) Delete(ctx context.Context, id string) error {
	if _, err := km.lookup(ctx, id, SecretActionDelete); err != nil {
		return err
	}
	if err := km.store.DeleteSecret(ctx, id); err != nil {
		if errors.Is(err, ErrNotFound) {
			return errSecretNotFound
		}
		return fmt.Errorf("delete secret %s: %w", id, err)
	}
	return nil
}

// Certificate returns the X.509 certificate stored as secret id, read with
// the caller's rights (as Glance reads it with the user's context). Errors
// carry cursive's messages: "Certificate not found with ID: ...".
func (km *KeyManager) Certificate(ctx context.Context, id string) (*x509.Certificate, error) {
	s, err := km.lookup(ctx, id, SecretActionDecrypt)
	if errors.Is(err, ErrNotFound) || errors.Is(err, ErrForbidden) {
		return nil, &SignatureError{Reason: "Certificate not found with ID: " + id}
	}
	if err != nil {
		return nil, fmt.Errorf("retrieve certificate %s: %w", id, err)
	}
	if s.SecretType != SecretTypeCertificate {
		return nil, &SignatureError{Reason: fmt.Sprintf("Invalid certificate format: secret %s is a %q secret, not an X.509 certificate", id, s.SecretType)}
	}
	cert, err := ParseCertificate(s.Payload)
	if err != nil {
		return nil, &SignatureError{Reason: fmt.Sprintf("Invalid certificate format: secret %s: %v", id, err)}
	}
	return cert, nil
}
