package engine

import (
	"context"
	"slices"
	"time"
)

// Secret is a key-manager secret as replicated by the metadata store: a
// Barbican secret's attributes and its payload. Mosaic's key manager holds
// what image signing needs (X.509 certificates and public keys); payloads
// are not encrypted at rest. A Secret read from a store is a copy the caller
// may modify.
type Secret struct {
	ID string `json:"id"`
	// ProjectID owns the secret; "" when it was stored without
	// authentication.
	ProjectID string `json:"project_id,omitempty"`
	// CreatorID is the user who stored it ("" without authentication).
	CreatorID  string     `json:"creator_id,omitempty"`
	Name       string     `json:"name,omitempty"`
	SecretType string     `json:"secret_type"`
	Algorithm  string     `json:"algorithm,omitempty"`
	BitLength  int        `json:"bit_length,omitempty"`
	Mode       string     `json:"mode,omitempty"`
	Expiration *time.Time `json:"expiration,omitempty"`
	// ContentType is the payload's normalised media type
	// (application/octet-stream, application/pkix-cert, text/plain...).
	ContentType string    `json:"content_type"`
	Payload     []byte    `json:"payload"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Clone returns a deep copy of s.
func (s *Secret) Clone() *Secret {
	c := *s
	if s.Expiration != nil {
		v := *s.Expiration
		c.Expiration = &v
	}
	c.Payload = slices.Clone(s.Payload)
	return &c
}

// Expired reports whether the secret's expiration has passed at now.
func (s *Secret) Expired(now time.Time) bool {
	return s.Expiration != nil && !now.Before(*s.Expiration)
}

// SecretStore holds key-manager secrets. Implementations replicate them
// (raftmeta) and are safe for concurrent use. Reads are linearizable unless
// the context carries LocalRead. Secrets are immutable once stored: there is
// no update.
type SecretStore interface {
	// GetSecret returns the secret, or an error matching ErrNotFound.
	GetSecret(ctx context.Context, id string) (*Secret, error)
	// ListSecrets returns copies of the secrets for which match returns
	// true, in ID order. match runs under the store's read lock: it must be
	// quick and must not call the store.
	ListSecrets(ctx context.Context, match func(*Secret) bool) ([]*Secret, error)
	// CreateSecret stores a new secret and returns it. ErrExists if the ID
	// is taken.
	CreateSecret(ctx context.Context, s *Secret) (*Secret, error)
	// DeleteSecret removes a secret; ErrNotFound if it is absent.
	DeleteSecret(ctx context.Context, id string) error
}
