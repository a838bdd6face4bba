package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// httpError is an error the HTTP layer itself raises with a fixed status
// (405, 404 for unknown paths, 400 for bodies it cannot read...).
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func newHTTPError(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

var errNotFoundPath = newHTTPError(http.StatusNotFound, "The resource could not be found.")

func errMethodNotAllowed(m string) error {
	return newHTTPError(http.StatusMethodNotAllowed, "The method %s is not allowed for this resource.", m)
}

// statusFor translates an error into an HTTP status and the explanation
// Glance would give. It is the one place engine errors become HTTP.
func statusFor(err error) (int, string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.msg
	}
	msg, user := engine.UserMessage(err)
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, engine.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, engine.ErrExists), errors.Is(err, engine.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, engine.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, engine.ErrForbidden):
		status = http.StatusForbidden
	case errors.Is(err, engine.ErrTooLarge), errors.Is(err, engine.ErrNoSpace):
		status = http.StatusRequestEntityTooLarge
	case errors.Is(err, engine.ErrGone):
		status = http.StatusGone
	case errors.Is(err, engine.ErrUnsupported):
		status = http.StatusUnsupportedMediaType
	case errors.Is(err, engine.ErrNotLeader), errors.Is(err, engine.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
	case errors.Is(err, engine.ErrCorrupt):
		// Name the chunk: operators need it, and it reveals nothing of other users.
		return http.StatusInternalServerError, "The image data failed verification: " + err.Error()
	}
	if !user {
		switch status {
		case http.StatusInternalServerError:
			msg = "The server has either erred or is incapable of performing the requested operation."
		case http.StatusServiceUnavailable:
			msg = "The server is currently unavailable. Please try again at a later time."
		default:
			msg = http.StatusText(status)
		}
	}
	return status, msg
}

// writeError renders err the way Glance (webob) does: JSON when the client
// accepts JSON, plain text when it sends no Accept, HTML otherwise. Errors
// are logged here, and only here.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := statusFor(err)
	level := slogLevelFor(status)
	s.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path,
		"status", status, "err", err, "request_id", w.Header().Get("X-Openstack-Request-Id"))
	code := fmt.Sprintf("%d %s", status, http.StatusText(status))
	accept := r.Header.Get("Accept")
	var body string
	switch {
	case strings.Contains(accept, "application/json"):
		b, _ := json.Marshal(map[string]string{
			"message": msg + "<br /><br />\n\n\n", "code": code, "title": http.StatusText(status),
		})
		w.Header().Set("Content-Type", "application/json")
		body = string(b)
	case accept == "":
		w.Header().Set("Content-Type", "text/plain; charset=UTF-8")
		body = code + "\n\n" + msg + "\n\n   "
	default:
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		body = "<html>\n <head>\n  <title>" + code + "</title>\n </head>\n <body>\n  <h1>" + code +
			"</h1>\n  " + html.EscapeString(msg) + "<br /><br />\n\n\n\n </body>\n</html>"
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(body))
	}
}
