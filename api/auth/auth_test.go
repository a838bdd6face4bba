package auth

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/keystone"
)

func TestMain(m *testing.M) {
	code := m.Run()
	keystone.Stop()
	os.Exit(code)
}

func request(tok string) *http.Request {
	r, _ := http.NewRequest("GET", "/v2/images", nil)
	if tok != "" {
		r.Header.Set("X-Auth-Token", tok)
	}
	return r
}

func TestTokenFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte("# token user project roles\nadmintok root-user admin-proj admin,member\n\nalice-tok alice projA member,reader # comment\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tf, err := LoadTokenFile(p)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tf.Authenticate(context.Background(), request("alice-tok"))
	if err != nil || c.UserID != "alice" || c.ProjectID != "projA" || c.IsAdmin || !c.HasRole("reader") {
		t.Fatalf("alice: %+v %v", c, err)
	}
	c, err = tf.Authenticate(context.Background(), request("admintok"))
	if err != nil || !c.IsAdmin {
		t.Fatalf("admin: %+v %v", c, err)
	}
	for _, tok := range []string{"", "nope", "alice-tok "} {
		if _, err := tf.Authenticate(context.Background(), request(tok)); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("token %q: %v, want ErrUnauthenticated", tok, err)
		}
	}
	for _, bad := range []string{"tok user project\n", "a u p r\na u p r\n", "# nothing\n"} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTokenFile(p); err == nil {
			t.Fatalf("token file %q accepted", bad)
		}
	}
}

// countingTransport counts requests that reach Keystone.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestKeystoneValidation(t *testing.T) {
	ks := keystone.Shared(t)
	proj := ks.CreateProject(t, "authtest-"+time.Now().Format("150405.000000"))
	user := "authtest-user-" + time.Now().Format("150405.000000")
	uid := ks.CreateUser(t, user, "pw-1")
	ks.Grant(t, proj, uid, "member")
	ks.Grant(t, proj, uid, "reader")

	for _, mode := range []string{"service token", "self validation"} {
		t.Run(mode, func(t *testing.T) {
			ct := &countingTransport{}
			cfg := KeystoneConfig{URL: ks.URL, Client: &http.Client{Transport: ct, Timeout: 30 * time.Second}}
			if mode == "service token" {
				cfg.ServiceUser, cfg.ServicePassword, cfg.ServiceProject = "admin", ks.AdminPassword, "admin"
			}
			k, err := NewKeystone(cfg)
			if err != nil {
				t.Fatal(err)
			}
			tok := ks.Token(t, user, "pw-1", proj)
			c, err := k.Authenticate(context.Background(), request(tok))
			if err != nil {
				t.Fatal(err)
			}
			if c.ProjectID != proj || c.UserID != uid || c.IsAdmin || !slices.Contains(c.Roles, "member") || !slices.Contains(c.Roles, "reader") {
				t.Fatalf("caller %+v, want project %s user %s member+reader", c, proj, uid)
			}
			before := ct.n.Load()
			for range 20 {
				if _, err := k.Authenticate(context.Background(), request(tok)); err != nil {
					t.Fatal(err)
				}
			}
			if n := ct.n.Load() - before; n != 0 {
				t.Fatalf("a cached token reached Keystone %d more times", n)
			}
			if got := k.Challenge(); got != `Keystone uri="`+ks.URL+`"` {
				t.Fatalf("challenge %q", got)
			}

			for _, bad := range []string{"", "garbage", "gAAAAABnot-a-real-fernet-token"} {
				if _, err := k.Authenticate(context.Background(), request(bad)); !errors.Is(err, ErrUnauthenticated) {
					t.Fatalf("token %q: %v, want ErrUnauthenticated", bad, err)
				}
			}
			revoked := ks.Token(t, user, "pw-1", proj)
			ks.Revoke(t, revoked)
			if _, err := k.Authenticate(context.Background(), request(revoked)); !errors.Is(err, ErrUnauthenticated) {
				t.Fatalf("revoked token: %v, want ErrUnauthenticated", err)
			}
		})
	}
}

func TestKeystoneExpiredTokens(t *testing.T) {
	ks := keystone.Shared(t)
	proj := ks.CreateProject(t, "expiry-"+time.Now().Format("150405.000000"))
	user := "expiry-user-" + time.Now().Format("150405.000000")
	uid := ks.CreateUser(t, user, "pw-2")
	ks.Grant(t, proj, uid, "member")
	k, err := NewKeystone(KeystoneConfig{URL: ks.URL, ServiceUser: "admin", ServicePassword: ks.AdminPassword, ServiceProject: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	tok, exp := ks.ShortLivedToken(t, uid, user, "pw-2", proj, 10*time.Second)
	if _, err := k.Authenticate(context.Background(), request(tok)); err != nil {
		t.Fatalf("fresh short-lived token (expires in %v): %v", time.Until(exp), err)
	}
	// The cache must not outlive the token: poll past its expiry.
	deadline := exp.Add(30 * time.Second)
	for {
		_, err := k.Authenticate(context.Background(), request(tok))
		if errors.Is(err, ErrUnauthenticated) {
			if time.Now().Before(exp) {
				t.Fatalf("token refused %v before it expired", time.Until(exp))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("token still accepted 30 s after it expired at %v", exp)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// BenchmarkAuthenticate is the per-request cost of each mode's lookup
// once Keystone's cache is warm: what issue 6's figure is made of.
func BenchmarkAuthenticate(b *testing.B) {
	p := filepath.Join(b.TempDir(), "tokens")
	if err := os.WriteFile(p, []byte("tok-0123456789abcdef0123456789abcdef u p member,reader\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	tf, err := LoadTokenFile(p)
	if err != nil {
		b.Fatal(err)
	}
	ks := keystone.Shared(b)
	k, err := NewKeystone(KeystoneConfig{URL: ks.URL})
	if err != nil {
		b.Fatal(err)
	}
	adminTok := ks.AdminToken(b)
	for _, c := range []struct {
		name string
		a    Authenticator
		tok  string
	}{{"token-file", tf, "tok-0123456789abcdef0123456789abcdef"}, {"keystone-cached", k, adminTok}} {
		b.Run(c.name, func(b *testing.B) {
			r := request(c.tok)
			if _, err := c.a.Authenticate(context.Background(), r); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.a.Authenticate(context.Background(), r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
