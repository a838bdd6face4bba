package api

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

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
		// Authentication is off: every request acts as Glance's
		// unauthenticated context (auth modes replace this).
		r = r.WithContext(engine.WithCaller(r.Context(), engine.NoAuthCaller()))
		if p, ok := versionedPath(r.URL.Path); ok {
			r.URL.Path, r.URL.RawPath = p, ""
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"duration", time.Since(start), "request_id", id)
	})
}

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
