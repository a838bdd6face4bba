package auth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// KeystoneConfig configures Keystone validation.
type KeystoneConfig struct {
	// URL is Keystone's base URL, e.g. http://127.0.0.1:5000 (with or
	// without /v3).
	URL string
	// PublicURL is the Keystone URL clients are told to authenticate at
	// (WWW-Authenticate, keystonemiddleware's www_authenticate_uri);
	// "" means URL.
	PublicURL string
	// Service credentials: when set, tokens are validated with a service
	// token (as keystonemiddleware does); when empty, each token validates
	// itself.
	ServiceUser, ServicePassword, ServiceProject, ServiceDomain string
	// CacheTTL bounds how long a validation is reused (keystonemiddleware's
	// token_cache_time); never longer than the token itself lives.
	// 0 means 5 minutes.
	CacheTTL time.Duration
	// NegativeTTL is how long an invalid token is remembered as invalid;
	// 0 means 10 seconds.
	NegativeTTL time.Duration
	// MaxCached bounds the cache; 0 means 100,000 entries.
	MaxCached int
	Client    *http.Client
	Logger    *slog.Logger
	// Now may be replaced in tests.
	Now func() time.Time
}

// Keystone validates X-Auth-Token with Keystone v3.
type Keystone struct {
	cfg  KeystoneConfig
	base string // .../v3

	mu      sync.Mutex
	cache   map[[32]byte]cacheEntry
	service string // service token
	svcExp  time.Time
	// inflight coalesces concurrent validations of one token.
	inflight map[[32]byte]*validation
}

type cacheEntry struct {
	caller *engine.Caller // nil: known invalid
	until  time.Time
}

type validation struct {
	done   chan struct{}
	caller *engine.Caller
	exp    time.Time
	err    error
}

// NewKeystone returns a Keystone authenticator.
func NewKeystone(cfg KeystoneConfig) (*Keystone, error) {
	if cfg.URL == "" {
		return nil, errors.New("auth: keystone URL is empty")
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = 5 * time.Minute
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = 10 * time.Second
	}
	if cfg.MaxCached == 0 {
		cfg.MaxCached = 100000
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ServiceDomain == "" {
		cfg.ServiceDomain = "Default"
	}
	base := strings.TrimRight(cfg.URL, "/")
	if !strings.HasSuffix(base, "/v3") {
		base += "/v3"
	}
	return &Keystone{cfg: cfg, base: base, cache: map[[32]byte]cacheEntry{}, inflight: map[[32]byte]*validation{}}, nil
}

// Challenge implements Authenticator: keystonemiddleware's header.
func (k *Keystone) Challenge() string {
	u := strings.TrimSuffix(k.base, "/v3")
	if k.cfg.PublicURL != "" {
		u = strings.TrimSuffix(strings.TrimRight(k.cfg.PublicURL, "/"), "/v3")
	}
	return fmt.Sprintf("Keystone uri=%q", u)
}

// Check asks Keystone for its v3 version document and, with service
// credentials, issues the service token: it tells an operator at start
// whether tokens can be validated. Errors match engine.ErrUnavailable.
func (k *Keystone) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base, nil)
	if err != nil {
		return fmt.Errorf("auth: keystone check: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		return fmt.Errorf("auth: keystone check: %w: %v", engine.ErrUnavailable, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("auth: keystone check: %w: GET %s: HTTP %d", engine.ErrUnavailable, k.base, resp.StatusCode)
	}
	if k.cfg.ServiceUser != "" {
		if _, err := k.serviceToken(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Authenticate implements Authenticator.
func (k *Keystone) Authenticate(ctx context.Context, r *http.Request) (*engine.Caller, error) {
	tok := r.Header.Get("X-Auth-Token")
	if tok == "" || len(tok) > 8192 {
		return nil, ErrUnauthenticated
	}
	key := sha256.Sum256([]byte(tok))
	now := k.cfg.Now()
	k.mu.Lock()
	if e, ok := k.cache[key]; ok && now.Before(e.until) {
		k.mu.Unlock()
		if e.caller == nil {
			return nil, ErrUnauthenticated
		}
		return cloneCaller(e.caller), nil
	}
	if v, ok := k.inflight[key]; ok {
		k.mu.Unlock()
		select {
		case <-v.done:
			if v.err != nil {
				return nil, v.err
			}
			return cloneCaller(v.caller), nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	v := &validation{done: make(chan struct{})}
	k.inflight[key] = v
	k.mu.Unlock()

	v.caller, v.exp, v.err = k.validate(context.WithoutCancel(ctx), tok)
	k.mu.Lock()
	delete(k.inflight, key)
	switch {
	case v.err == nil:
		until := now.Add(k.cfg.CacheTTL)
		if v.exp.Before(until) {
			until = v.exp
		}
		k.put(key, cacheEntry{caller: v.caller, until: until})
	case errors.Is(v.err, ErrUnauthenticated):
		k.put(key, cacheEntry{until: now.Add(k.cfg.NegativeTTL)})
	}
	k.mu.Unlock()
	close(v.done)
	if v.err != nil {
		return nil, v.err
	}
	return cloneCaller(v.caller), nil
}

// put stores an entry, evicting expired ones (or, if all are live, an
// arbitrary one) when the cache is full. Callers hold k.mu.
func (k *Keystone) put(key [32]byte, e cacheEntry) {
	if len(k.cache) >= k.cfg.MaxCached {
		now := k.cfg.Now()
		for kk, ee := range k.cache {
			if !now.Before(ee.until) {
				delete(k.cache, kk)
			}
		}
		for kk := range k.cache {
			if len(k.cache) < k.cfg.MaxCached {
				break
			}
			delete(k.cache, kk)
		}
	}
	k.cache[key] = e
}

func cloneCaller(c *engine.Caller) *engine.Caller {
	cc := *c
	cc.Roles = append([]string(nil), c.Roles...)
	return &cc
}

// tokenBody is the part of Keystone's token document we read.
type tokenBody struct {
	Token struct {
		ExpiresAt string `json:"expires_at"`
		User      struct {
			ID string `json:"id"`
		} `json:"user"`
		Project *struct {
			ID string `json:"id"`
		} `json:"project"`
		Roles []struct {
			Name string `json:"name"`
		} `json:"roles"`
	} `json:"token"`
}

// validate asks Keystone about tok.
func (k *Keystone) validate(ctx context.Context, tok string) (*engine.Caller, time.Time, error) {
	authTok := tok
	if k.cfg.ServiceUser != "" {
		st, err := k.serviceToken(ctx)
		if err != nil {
			return nil, time.Time{}, err
		}
		authTok = st
	}
	resp, err := k.do(ctx, authTok, tok)
	if err != nil {
		return nil, time.Time{}, err
	}
	if resp.StatusCode == http.StatusUnauthorized && k.cfg.ServiceUser != "" {
		// The service token may have expired early (revoked): renew once.
		resp.Body.Close()
		k.mu.Lock()
		k.service = ""
		k.mu.Unlock()
		st, err := k.serviceToken(ctx)
		if err != nil {
			return nil, time.Time{}, err
		}
		if resp, err = k.do(ctx, st, tok); err != nil {
			return nil, time.Time{}, err
		}
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden, http.StatusBadRequest:
		return nil, time.Time{}, ErrUnauthenticated
	default:
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, time.Time{}, fmt.Errorf("auth: keystone validate: %w: HTTP %d: %s", engine.ErrUnavailable, resp.StatusCode, b)
	}
	var body tokenBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&body); err != nil {
		return nil, time.Time{}, fmt.Errorf("auth: keystone validate: %w: bad token document: %v", engine.ErrUnavailable, err)
	}
	exp, err := ParseKeystoneTime(body.Token.ExpiresAt)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("auth: keystone validate: %w: %v", engine.ErrUnavailable, err)
	}
	if !k.cfg.Now().Before(exp) {
		return nil, time.Time{}, ErrUnauthenticated
	}
	c := &engine.Caller{UserID: body.Token.User.ID}
	if body.Token.Project != nil {
		c.ProjectID = body.Token.Project.ID
	}
	for _, r := range body.Token.Roles {
		c.Roles = append(c.Roles, r.Name)
	}
	c.IsAdmin = hasRole(c.Roles, "admin")
	return c, exp, nil
}

func (k *Keystone) do(ctx context.Context, authTok, subject string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/auth/tokens?nocatalog", nil)
	if err != nil {
		return nil, fmt.Errorf("auth: keystone validate: %w", err)
	}
	req.Header.Set("X-Auth-Token", authTok)
	req.Header.Set("X-Subject-Token", subject)
	req.Header.Set("Accept", "application/json")
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("auth: keystone validate: %w: %v", engine.ErrUnavailable, err)
	}
	return resp, nil
}

// serviceToken returns a valid service token, issuing one when needed.
func (k *Keystone) serviceToken(ctx context.Context) (string, error) {
	k.mu.Lock()
	if k.service != "" && k.cfg.Now().Add(time.Minute).Before(k.svcExp) {
		t := k.service
		k.mu.Unlock()
		return t, nil
	}
	k.mu.Unlock()
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{
			"methods": []string{"password"},
			"password": map[string]any{"user": map[string]any{
				"name": k.cfg.ServiceUser, "password": k.cfg.ServicePassword,
				"domain": map[string]string{"name": k.cfg.ServiceDomain},
			}},
		},
		"scope": map[string]any{"project": map[string]any{
			"name": k.cfg.ServiceProject, "domain": map[string]string{"name": k.cfg.ServiceDomain},
		}},
	}}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, k.base+"/auth/tokens?nocatalog", bytes.NewReader(b))
	if err != nil {
		return "", fmt.Errorf("auth: keystone service token: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	// Issuing a token twice is harmless: let net/http resend the POST when
	// Keystone's server closed the idle connection it went out on.
	req.Header["Idempotency-Key"] = nil
	resp, err := k.cfg.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("auth: keystone service token: %w: %v", engine.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("auth: keystone service token: %w: HTTP %d: %s", engine.ErrUnavailable, resp.StatusCode, msg)
	}
	var tb tokenBody
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&tb); err != nil {
		return "", fmt.Errorf("auth: keystone service token: %w: %v", engine.ErrUnavailable, err)
	}
	exp, err := ParseKeystoneTime(tb.Token.ExpiresAt)
	if err != nil {
		return "", fmt.Errorf("auth: keystone service token: %w: %v", engine.ErrUnavailable, err)
	}
	tok := resp.Header.Get("X-Subject-Token")
	if tok == "" {
		return "", fmt.Errorf("auth: keystone service token: %w: no X-Subject-Token", engine.ErrUnavailable)
	}
	k.mu.Lock()
	k.service, k.svcExp = tok, exp
	k.mu.Unlock()
	k.cfg.Logger.Info("keystone service token issued", "expires", exp)
	return tok, nil
}

// ParseKeystoneTime parses a Keystone timestamp. Keystone usually writes
// RFC 3339 with a "Z", but a token capped by an application credential's
// expiry carries that expiry's naive isoformat (no zone), which is UTC.
func ParseKeystoneTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad keystone time %q", s)
	}
	return t, nil
}
