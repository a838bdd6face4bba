package api

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mosaicimg/mosaic/api/auth"
	"github.com/mosaicimg/mosaic/engine"
)

// middleware adds the request ID header Glance sends on every response
// and logs each request.
func (s *server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := newRequestID()
		w.Header().Set("X-Openstack-Request-Id", id)
		if v := r.Header.Get("X-Openstack-Request-Id"); len(v) > 64 {
			s.writeError(w, r, newHTTPError(http.StatusBadRequest, "Request ID longer than 64 characters."))
			return
		}
		caller, err := s.authenticate(r)
		if err != nil {
			s.authFailed(w, r, err)
			return
		}
		r = r.WithContext(engine.WithCaller(r.Context(), caller))
		if p, ok := versionedPath(r.URL.Path); ok {
			r.URL.Path, r.URL.RawPath = p, ""
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration", time.Since(start), "request_id", id)
	})
}

// authenticate returns the request's caller. The version documents are
// served to anyone, as Glance's version negotiation answers them before
// its authtoken middleware; they act as an anonymous caller that policy
// allows nothing, never as the system (a context without a caller).
func (s *server) authenticate(r *http.Request) (*engine.Caller, error) {
	if r.URL.Path == "/" || r.URL.Path == "/versions" {
		return &engine.Caller{}, nil
	}
	return s.o.Auth.Authenticate(r.Context(), r)
}

// authFailed answers a request that could not be authenticated as
// keystonemiddleware does: 401 with its JSON body and, when the identity
// service has one, a WWW-Authenticate challenge naming it; 503 when the
// identity service could not be asked (never a silent allow).
func (s *server) authFailed(w http.ResponseWriter, r *http.Request, err error) {
	if !errors.Is(err, auth.ErrUnauthenticated) {
		s.log.Warn("cannot authenticate: identity service unavailable", "method", r.Method, "path", r.URL.Path, "err", err,
			"request_id", w.Header().Get("X-Openstack-Request-Id"))
		s.writeError(w, r, newHTTPError(http.StatusServiceUnavailable, "The Keystone service is temporarily unavailable."))
		return
	}
	s.log.Debug("request not authenticated", "method", r.Method, "path", r.URL.Path, "err", err,
		"request_id", w.Header().Get("X-Openstack-Request-Id"))
	if ch := s.o.Auth.Challenge(); ch != "" {
		w.Header().Set("WWW-Authenticate", ch)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", fmt.Sprint(len(unauthorizedBody)))
	w.WriteHeader(http.StatusUnauthorized)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(unauthorizedBody))
	}
}

// unauthorizedBody is keystonemiddleware's 401 body.
const unauthorizedBody = `{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}`

// versionedPath maps Glance's minor-version prefixes (/v2.0 … /v2.15) to
// /v2, as its version negotiation does: minor versions are informational.
func versionedPath(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/v2.")
	if !ok {
		return "", false
	}
	i := 0
	for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
		i++
	}
	if i == 0 || i > 2 || (i < len(rest) && rest[i] != '/') {
		return "", false
	}
	return "/v2" + rest[i:], true
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("req-%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func slogLevelFor(status int) slog.Level {
	if status >= 500 {
		return slog.LevelError
	}
	return slog.LevelDebug
}
