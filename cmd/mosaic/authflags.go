package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/mosaicimg/mosaic/api/auth"
)

// authFlags are serve's authentication flags (docs/auth.md).
type authFlags struct {
	mode           string
	tokenFile      string
	insecureNoAuth bool

	keystoneURL, keystonePublicURL string
	serviceUser, servicePassword   string
	servicePasswordFile            string
	serviceProject, serviceDomain  string
	cacheTTL, timeout              time.Duration
}

func (f *authFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.mode, "auth", "none", "authentication: none (every request is an admin; loopback only), token (--token-file) or keystone (--keystone-url)")
	fs.StringVar(&f.tokenFile, "token-file", "", "with --auth token: file of 'TOKEN USER_ID PROJECT_ID ROLE[,ROLE...]' lines")
	fs.BoolVar(&f.insecureNoAuth, "insecure-allow-noauth", false, "allow --auth none on a non-loopback --api-addr (anyone who can connect is an admin)")
	fs.StringVar(&f.keystoneURL, "keystone-url", "", "with --auth keystone: Keystone's URL, e.g. http://keystone:5000 (validates X-Auth-Token with GET /v3/auth/tokens)")
	fs.StringVar(&f.keystonePublicURL, "keystone-public-url", "", "Keystone URL clients are sent to in 401 WWW-Authenticate (default --keystone-url)")
	fs.StringVar(&f.serviceUser, "keystone-service-user", "", "service user whose token validates users' tokens (default: each token validates itself)")
	fs.StringVar(&f.servicePassword, "keystone-service-password", "", "the service user's password (prefer MOSAIC_KEYSTONE_SERVICE_PASSWORD or --keystone-service-password-file)")
	fs.StringVar(&f.servicePasswordFile, "keystone-service-password-file", "", "file holding the service user's password")
	fs.StringVar(&f.serviceProject, "keystone-service-project", "service", "project the service token is scoped to")
	fs.StringVar(&f.serviceDomain, "keystone-service-domain", "Default", "domain (name) of the service user and project")
	fs.DurationVar(&f.cacheTTL, "keystone-cache-ttl", 5*time.Minute, "how long a validated token is reused before Keystone is asked again (never past the token's expiry; a revoked token is refused after at most this long)")
	fs.DurationVar(&f.timeout, "keystone-timeout", 10*time.Second, "timeout of one request to Keystone (a request that cannot be validated gets 503)")
}

// authenticator builds the configured Authenticator. apiAddr is where the
// API will listen: --auth none is refused beyond loopback unless forced.
func (f *authFlags) authenticator(apiAddr string, log *slog.Logger) (auth.Authenticator, error) {
	switch f.mode {
	case "none":
		if !isLoopback(apiAddr) {
			if !f.insecureNoAuth {
				return nil, fmt.Errorf("refusing --auth none on %s, which is not a loopback address: anyone who can connect would be an admin. Use --auth token or --auth keystone, or --insecure-allow-noauth", apiAddr)
			}
			log.Warn("API listens beyond loopback without authentication: every request is an admin", "addr", apiAddr)
		}
		return auth.None{}, nil
	case "token":
		if f.tokenFile == "" {
			return nil, errors.New("--auth token needs --token-file")
		}
		tf, err := auth.LoadTokenFile(f.tokenFile)
		if err != nil {
			return nil, err
		}
		if st, err := os.Stat(f.tokenFile); err == nil && st.Mode().Perm()&0o077 != 0 {
			log.Warn("the token file is readable by other users: chmod 600 it", "file", f.tokenFile, "mode", st.Mode().Perm())
		}
		log.Info("authentication: token file", "file", f.tokenFile, "tokens", tf.Len())
		return tf, nil
	case "keystone":
		if f.keystoneURL == "" {
			return nil, errors.New("--auth keystone needs --keystone-url")
		}
		pw := f.servicePassword
		if f.servicePasswordFile != "" {
			b, err := os.ReadFile(f.servicePasswordFile)
			if err != nil {
				return nil, fmt.Errorf("keystone service password: %w", err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		if f.serviceUser != "" && pw == "" {
			return nil, errors.New("--keystone-service-user needs a password (MOSAIC_KEYSTONE_SERVICE_PASSWORD or --keystone-service-password-file)")
		}
		if f.cacheTTL <= 0 {
			return nil, fmt.Errorf("--keystone-cache-ttl %v: must be positive", f.cacheTTL)
		}
		k, err := auth.NewKeystone(auth.KeystoneConfig{
			URL: f.keystoneURL, PublicURL: f.keystonePublicURL,
			ServiceUser: f.serviceUser, ServicePassword: pw,
			ServiceProject: f.serviceProject, ServiceDomain: f.serviceDomain,
			CacheTTL: f.cacheTTL, Client: &http.Client{Timeout: f.timeout}, Logger: log,
		})
		if err != nil {
			return nil, err
		}
		// Say now, not at the first request, if Keystone or the service
		// account does not work; requests get 503 until it does.
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout)
		defer cancel()
		if err := k.Check(ctx); err != nil {
			log.Error("Keystone cannot validate tokens yet: requests will get 503 until it can", "url", f.keystoneURL, "err", err)
		} else {
			log.Info("authentication: keystone", "url", f.keystoneURL, "service_user", f.serviceUser, "cache_ttl", f.cacheTTL)
		}
		return k, nil
	}
	return nil, fmt.Errorf("--auth %q: want none, token or keystone", f.mode)
}

// requireAdminFor guards the node's own operations under prefix (GC, the
// per-image usage report, which names every project's images): with
// --auth token or keystone they answer only an admin, authenticated as
// for the API (the mosaic CLI sends $OS_AUTH_TOKEN). Loopback alone is no
// identity: a reverse proxy on the host makes every client loopback.
// With --auth none they are left to their loopback rule.
func requireAdminFor(prefix string, authn auth.Authenticator, next http.Handler) http.Handler {
	if _, none := authn.(auth.None); none {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, prefix) {
			next.ServeHTTP(w, r)
			return
		}
		c, err := authn.Authenticate(r.Context(), r)
		switch {
		case errors.Is(err, auth.ErrUnauthenticated):
			if ch := authn.Challenge(); ch != "" {
				w.Header().Set("WWW-Authenticate", ch)
			}
			writeAdmin(w, http.StatusUnauthorized, map[string]string{"error": "the request you have made requires authentication (set OS_AUTH_TOKEN to an admin's token)"})
		case err != nil:
			writeAdmin(w, http.StatusServiceUnavailable, map[string]string{"error": "cannot authenticate: " + err.Error()})
		case !c.Admin():
			writeAdmin(w, http.StatusForbidden, map[string]string{"error": "storage operations need the admin role"})
		default:
			next.ServeHTTP(w, r)
		}
	})
}
