package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/api/auth"
)

func TestAuthFlags(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("t u p member\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		f       authFlags
		addr    string
		wantErr string // "" means it builds
	}{
		{"none on loopback", authFlags{mode: "none"}, "127.0.0.1:9292", ""},
		{"none on localhost", authFlags{mode: "none"}, "localhost:9292", ""},
		{"none on ::1", authFlags{mode: "none"}, "[::1]:9292", ""},
		{"none on all addresses", authFlags{mode: "none"}, "0.0.0.0:9292", "refusing --auth none"},
		{"none on an empty host", authFlags{mode: "none"}, ":9292", "refusing --auth none"},
		{"none on a LAN address", authFlags{mode: "none"}, "10.1.2.3:9292", "refusing --auth none"},
		{"none forced", authFlags{mode: "none", insecureNoAuth: true}, "0.0.0.0:9292", ""},
		{"token without file", authFlags{mode: "token"}, "0.0.0.0:9292", "needs --token-file"},
		{"token with a missing file", authFlags{mode: "token", tokenFile: tokens + ".nope"}, "0.0.0.0:9292", "token file"},
		{"token", authFlags{mode: "token", tokenFile: tokens}, "0.0.0.0:9292", ""},
		{"keystone without URL", authFlags{mode: "keystone"}, "0.0.0.0:9292", "needs --keystone-url"},
		{"keystone service user without password", authFlags{mode: "keystone", keystoneURL: "http://127.0.0.1:1", serviceUser: "glance", cacheTTL: 1}, "0.0.0.0:9292", "needs a password"},
		{"keystone with zero TTL", authFlags{mode: "keystone", keystoneURL: "http://127.0.0.1:1"}, "0.0.0.0:9292", "must be positive"},
		// Keystone down at start: it starts anyway (requests get 503 until it answers).
		{"keystone unreachable", authFlags{mode: "keystone", keystoneURL: "http://127.0.0.1:1", serviceUser: "glance", servicePasswordFile: pw, cacheTTL: 60e9, timeout: 1e9}, "0.0.0.0:9292", ""},
		{"unknown mode", authFlags{mode: "ldap"}, "127.0.0.1:9292", "want none, token or keystone"},
	}
	for _, c := range cases {
		a, err := c.f.authenticator(c.addr, log)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.wantErr)
		case c.wantErr == "" && a == nil:
			t.Errorf("%s: no authenticator", c.name)
		}
	}
	f := authFlags{mode: "keystone", keystoneURL: "http://127.0.0.1:1", serviceUser: "glance", servicePasswordFile: pw, cacheTTL: 60e9, timeout: 1e9}
	a, err := f.authenticator("127.0.0.1:9292", log)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(*auth.Keystone); !ok {
		t.Fatalf("keystone mode built %T", a)
	}
}
