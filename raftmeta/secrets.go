package raftmeta

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// Key-manager secret commands (range 48–63). A secret is immutable once
// stored, so there is no update and no revision: create fails if the ID is
// taken, delete if it is absent.
const (
	CmdCreateSecret CommandType = 48
	CmdDeleteSecret CommandType = 49
)

type (
	createSecretV1 struct {
		Secret *engine.Secret `json:"secret"`
	}
	deleteSecretV1 struct {
		ID string `json:"id"`
	}
)

// secretCommandName names the secret commands for CommandType.String.
func secretCommandName(t CommandType) string {
	switch t &^ IgnorableFlag {
	case CmdCreateSecret:
		return "create-secret"
	case CmdDeleteSecret:
		return "delete-secret"
	}
	return ""
}

// applySecretCommand applies a secret command (see applyCommand).
func applySecretCommand(st *state, t CommandType, version byte, body []byte) *applyResult {
	switch t &^ IgnorableFlag {
	case CmdCreateSecret:
		var c createSecretV1
		mustDecode(t, version, 1, body, &c)
		if c.Secret == nil || c.Secret.ID == "" {
			return &applyResult{Err: fmt.Errorf("create secret: %w: no id", engine.ErrInvalid)}
		}
		if _, ok := st.secrets[c.Secret.ID]; ok {
			return &applyResult{Err: fmt.Errorf("create secret %s: %w", c.Secret.ID, engine.ErrExists)}
		}
		st.secrets[c.Secret.ID] = c.Secret
		return &applyResult{}
	case CmdDeleteSecret:
		var c deleteSecretV1
		mustDecode(t, version, 1, body, &c)
		if _, ok := st.secrets[c.ID]; !ok {
			return &applyResult{Err: fmt.Errorf("delete secret %s: %w", c.ID, engine.ErrNotFound)}
		}
		delete(st.secrets, c.ID)
		return &applyResult{}
	}
	panic(fmt.Sprintf("raftmeta: %s is not a secret command", t))
}

// writeSecretRecords appends the secrets to a snapshot in ID order and
// returns how many it wrote.
func writeSecretRecords(enc *json.Encoder, st *state) (int, error) {
	ids := make([]string, 0, len(st.secrets))
	for id := range st.secrets {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		v, err := json.Marshal(st.secrets[id])
		if err != nil {
			return 0, err
		}
		if err := enc.Encode(snapshotRecord{T: "secret", V: v}); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

// readSecretRecord restores one snapshot record of type "secret".
func readSecretRecord(st *state, v json.RawMessage) error {
	var s engine.Secret
	if err := json.Unmarshal(v, &s); err != nil {
		return fmt.Errorf("raftmeta: restore secret: %w", err)
	}
	st.secrets[s.ID] = &s
	return nil
}

var _ engine.SecretStore = (*Node)(nil)

// GetSecret implements engine.SecretStore.
func (n *Node) GetSecret(ctx context.Context, id string) (*engine.Secret, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var s *engine.Secret
	n.fsm.read(func(st *state) {
		if v, ok := st.secrets[id]; ok {
			s = v.Clone()
		}
	})
	if s == nil {
		return nil, fmt.Errorf("raftmeta: secret %s: %w", id, engine.ErrNotFound)
	}
	return s, nil
}

// ListSecrets implements engine.SecretStore. Results are in ID order.
func (n *Node) ListSecrets(ctx context.Context, match func(*engine.Secret) bool) ([]*engine.Secret, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var out []*engine.Secret
	n.fsm.read(func(st *state) {
		for _, s := range st.secrets {
			if match == nil || match(s) {
				out = append(out, s.Clone())
			}
		}
	})
	slices.SortFunc(out, func(a, b *engine.Secret) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// CreateSecret implements engine.SecretStore.
func (n *Node) CreateSecret(ctx context.Context, s *engine.Secret) (*engine.Secret, error) {
	s = s.Clone()
	if _, err := n.propose(ctx, CmdCreateSecret, createSecretV1{Secret: s}); err != nil {
		return nil, err
	}
	return s, nil
}

// DeleteSecret implements engine.SecretStore.
func (n *Node) DeleteSecret(ctx context.Context, id string) error {
	_, err := n.propose(ctx, CmdDeleteSecret, deleteSecretV1{ID: id})
	return err
}
