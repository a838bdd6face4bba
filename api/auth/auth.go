package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// ErrUnauthenticated means the request carries no valid credentials.
var ErrUnauthenticated = errors.New("auth: the request you have made requires authentication")

// Authenticator turns a request into the caller it acts for.
type Authenticator interface {
	// Authenticate returns the caller, or an error matching
	// ErrUnauthenticated (401) or engine.ErrUnavailable (the identity
	// service cannot be reached: 503).
	Authenticate(ctx context.Context, r *http.Request) (*engine.Caller, error)
	// Challenge is the WWW-Authenticate value sent with a 401, or "".
	Challenge() string
}

// None authenticates every request as Glance's unauthenticated context.
type None struct{}

// Authenticate implements Authenticator.
func (None) Authenticate(context.Context, *http.Request) (*engine.Caller, error) {
	return engine.NoAuthCaller(), nil
}

// Challenge implements Authenticator.
func (None) Challenge() string { return "" }

// TokenFile authenticates X-Auth-Token against a static table.
type TokenFile struct {
	tokens map[string]engine.Caller
}

// LoadTokenFile reads a token file: one token per line,
//
//	TOKEN USER_ID PROJECT_ID ROLE[,ROLE...]
//
// separated by blanks; '#' starts a comment. A caller with the admin role
// is an admin (Glance's is_admin).
func LoadTokenFile(path string) (*TokenFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("auth: token file: %w", err)
	}
	defer f.Close()
	t := &TokenFile{tokens: map[string]engine.Caller{}}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 4 {
			return nil, fmt.Errorf("auth: token file %s line %d: want TOKEN USER PROJECT ROLES, got %d fields", path, n, len(fields))
		}
		if _, dup := t.tokens[fields[0]]; dup {
			return nil, fmt.Errorf("auth: token file %s line %d: duplicate token", path, n)
		}
		roles := strings.Split(fields[3], ",")
		t.tokens[fields[0]] = engine.Caller{
			UserID: fields[1], ProjectID: fields[2], Roles: roles, IsAdmin: hasRole(roles, "admin"),
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("auth: token file %s: %w", path, err)
	}
	if len(t.tokens) == 0 {
		return nil, fmt.Errorf("auth: token file %s has no tokens", path)
	}
	return t, nil
}

// Len returns the number of tokens.
func (t *TokenFile) Len() int { return len(t.tokens) }

// Authenticate implements Authenticator.
func (t *TokenFile) Authenticate(_ context.Context, r *http.Request) (*engine.Caller, error) {
	tok := r.Header.Get("X-Auth-Token")
	if tok == "" {
		return nil, ErrUnauthenticated
	}
	c, ok := t.tokens[tok]
	if !ok {
		return nil, ErrUnauthenticated
	}
	c.Roles = append([]string(nil), c.Roles...)
	return &c, nil
}

// Challenge implements Authenticator.
func (t *TokenFile) Challenge() string { return "" }

func hasRole(roles []string, want string) bool {
	for _, r := range roles {
		if strings.EqualFold(r, want) {
			return true
		}
	}
	return false
}
