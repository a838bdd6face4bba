package engine

import (
	"errors"
	"fmt"
)

// Error kinds travel between nodes (forwarded Raft commands, chunk
// requests) as short names. ErrorKind and KindError translate them, so the
// same sentinel matches on both sides of the wire.
var errorKinds = []struct {
	name string
	err  error
}{
	{"not_found", ErrNotFound}, {"exists", ErrExists}, {"conflict", ErrConflict},
	{"invalid", ErrInvalid}, {"corrupt", ErrCorrupt}, {"forbidden", ErrForbidden},
	{"not_leader", ErrNotLeader}, {"unavailable", ErrUnavailable}, {"too_large", ErrTooLarge},
	{"gone", ErrGone}, {"unsupported", ErrUnsupported}, {"no_space", ErrNoSpace},
}

// ErrorKind returns the wire name of err's kind ("internal" when it matches
// none of the sentinels).
func ErrorKind(err error) string {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "internal"
}

// KindError rebuilds an error received from another node: it matches the
// sentinel named by kind and carries msg. When user is true msg is the
// user-facing message (see UserError).
func KindError(kind, msg string, user bool) error {
	for _, k := range errorKinds {
		if k.name == kind {
			if user {
				return &UserError{Kind: k.err, Msg: msg}
			}
			return fmt.Errorf("%w: %s", k.err, msg)
		}
	}
	return errors.New(msg)
}
