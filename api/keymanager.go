package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mosaicimg/mosaic/engine"
)

// KeyManager is what the key-manager (Barbican v1 subset) handlers need;
// *engine.KeyManager implements it.
type KeyManager interface {
	Create(ctx context.Context, s *engine.Secret) (*engine.Secret, error)
	Get(ctx context.Context, id string) (*engine.Secret, error)
	Payload(ctx context.Context, id string) (*engine.Secret, error)
	List(ctx context.Context, f engine.SecretFilter) ([]*engine.Secret, error)
	Delete(ctx context.Context, id string) error
}

// Barbican's request limits (max_allowed_request_size_in_bytes and the
// paging limits of its secret list).
const (
	kmMaxRequestBody = 15000
	kmDefaultLimit   = 10
	kmMaxLimit       = 100
)

// keyManagerRoutes registers the Barbican v1 secrets subset Glance, Nova
// (through castellan) and python-barbicanclient use.
func (s *server) keyManagerRoutes() {
	if s.o.KeyManager == nil {
		return
	}
	list := map[string]http.HandlerFunc{"GET": s.kmList, "POST": s.kmCreate}
	s.kmRoute("/v1/secrets", list)
	s.kmRoute("/v1/secrets/{$}", list) // barbicanclient posts to "secrets/"
	s.kmRoute("/v1/secrets/{secret_id}", map[string]http.HandlerFunc{"GET": s.kmGet, "DELETE": s.kmDelete})
	s.kmRoute("/v1/secrets/{secret_id}/payload", map[string]http.HandlerFunc{"GET": s.kmPayload})
}

// kmRoute is route with Barbican's error format for 405.
func (s *server) kmRoute(path string, handlers map[string]http.HandlerFunc) {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		if _, ok := handlers[m]; ok {
			allow = append(allow, m)
		}
	}
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		h, ok := handlers[r.Method]
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			s.writeKMError(w, r, newHTTPError(http.StatusMethodNotAllowed, "The method %s is not allowed for this resource.", r.Method))
			return
		}
		h(w, r)
	})
}

// writeKMError renders err as Barbican does: {"code", "title",
// "description"} (python-barbicanclient shows "title: description"). Errors
// are logged here, and only here, as in writeError.
func (s *server) writeKMError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := statusFor(err)
	s.log.Log(r.Context(), slogLevelFor(status), "request failed", "method", r.Method, "path", r.URL.Path,
		"status", status, "err", err, "request_id", w.Header().Get("X-Openstack-Request-Id"))
	writeJSON(w, status, map[string]any{"code": status, "title": http.StatusText(status), "description": msg})
}

var errSecretIDInvalid = newHTTPError(http.StatusNotFound, "Not Found. Provided secret id is invalid.")

// secretID returns the path's secret ID, lower case, if it is a UUID.
func secretID(r *http.Request) (string, error) {
	id := r.PathValue("secret_id")
	if !engine.IsUUID(id) {
		return "", errSecretIDInvalid
	}
	return strings.ToLower(id), nil
}

func secretRef(r *http.Request, id string) string { return baseURL(r) + "/v1/secrets/" + id }

func barbicanTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05") }

// secretJSON renders a secret's metadata as Barbican does.
func secretJSON(r *http.Request, sec *engine.Secret) map[string]any {
	null := func(v string) any {
		if v == "" {
			return nil
		}
		return v
	}
	m := map[string]any{
		"secret_ref":    secretRef(r, sec.ID),
		"name":          null(sec.Name),
		"secret_type":   sec.SecretType,
		"status":        "ACTIVE",
		"algorithm":     null(sec.Algorithm),
		"mode":          null(sec.Mode),
		"bit_length":    nil,
		"expiration":    nil,
		"creator_id":    null(sec.CreatorID),
		"created":       barbicanTime(sec.CreatedAt),
		"updated":       barbicanTime(sec.UpdatedAt),
		"content_types": map[string]string{"default": sec.ContentType},
	}
	if sec.BitLength > 0 {
		m["bit_length"] = sec.BitLength
	}
	if sec.Expiration != nil {
		m["expiration"] = sec.Expiration.UTC().Format("2006-01-02T15:04:05Z")
	}
	return m
}

// newSecretRequest is POST /v1/secrets's body (Barbican's
// NewSecretValidator schema).
type newSecretRequest struct {
	Name                   *string `json:"name"`
	Algorithm              *string `json:"algorithm"`
	Mode                   *string `json:"mode"`
	BitLength              *int    `json:"bit_length"`
	Expiration             *string `json:"expiration"`
	Payload                *string `json:"payload"`
	SecretType             *string `json:"secret_type"`
	PayloadContentType     *string `json:"payload_content_type"`
	PayloadContentEncoding *string `json:"payload_content_encoding"`
}

func secretSchemaError(format string, args ...any) error {
	return engine.Errorf(engine.ErrInvalid, "Provided object does not match schema 'Secret': "+format, args...)
}

// normalizeContentType maps a payload content type to Barbican's internal
// form and reports whether it is supported and binary.
func normalizeContentType(ct string) (norm string, binary, ok bool) {
	parts := strings.Split(ct, ";")
	base := strings.ToLower(strings.TrimSpace(parts[0]))
	if len(parts) > 1 {
		k, v, found := strings.Cut(strings.ToLower(strings.TrimSpace(parts[1])), "=")
		if len(parts) > 2 || !found || strings.TrimSpace(k) != "charset" || strings.TrimSpace(v) != "utf-8" || base != "text/plain" {
			return "", false, false
		}
	}
	switch base {
	case "text/plain":
		return base, false, true
	case "application/octet-stream", "application/pkcs8", "application/pkix-cert":
		return base, true, true
	}
	return "", false, false
}

const supportedSecretContentTypes = "['text/plain', 'text/plain;charset=utf-8', 'text/plain; charset=utf-8', 'application/octet-stream', 'application/pkcs8', 'application/pkix-cert']"

// secretFromRequest validates a POST body as Barbican does and returns the
// secret with its decoded payload.
func secretFromRequest(b []byte) (*engine.Secret, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, newHTTPError(http.StatusBadRequest, "Malformed JSON")
	}
	var req newSecretRequest
	if err := json.Unmarshal(b, &req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, secretSchemaError("%s is not of the expected type. Invalid property: '%s'", te.Value, te.Field)
		}
		return nil, newHTTPError(http.StatusBadRequest, "Malformed JSON")
	}
	sec := &engine.Secret{}
	str := func(field string, v *string, maxLen int) (string, error) {
		if v == nil {
			return "", nil
		}
		if len(*v) > maxLen {
			return "", secretSchemaError("'%s' is too long. Invalid property: '%s'", *v, field)
		}
		return *v, nil
	}
	var err error
	if sec.Name, err = str("name", req.Name, 255); err != nil {
		return nil, err
	}
	sec.Name = strings.TrimSpace(sec.Name)
	if sec.Algorithm, err = str("algorithm", req.Algorithm, 255); err != nil {
		return nil, err
	}
	if sec.Mode, err = str("mode", req.Mode, 255); err != nil {
		return nil, err
	}
	if req.BitLength != nil {
		if *req.BitLength < 1 || *req.BitLength > 32767 {
			return nil, secretSchemaError("%d is out of range. Invalid property: 'bit_length'", *req.BitLength)
		}
		sec.BitLength = *req.BitLength
	}
	if req.SecretType != nil {
		sec.SecretType = *req.SecretType
	} else {
		sec.SecretType = "opaque" // Barbican's default; the engine refuses it with a reason
	}
	if req.Expiration != nil && strings.TrimSpace(*req.Expiration) != "" {
		t, ok := parseISOTime(strings.TrimSpace(*req.Expiration))
		if !ok {
			return nil, secretSchemaError("Invalid date for 'expiration'. Invalid property: 'expiration'")
		}
		sec.Expiration = &t
	}
	if req.Payload == nil {
		return nil, secretSchemaError("Mosaic's key manager needs the payload in the POST (two-step creation with PUT is not supported). Invalid property: 'payload'")
	}
	if req.PayloadContentType == nil {
		return nil, secretSchemaError("If 'payload' is supplied, 'payload_content_type' must also be supplied. Invalid property: 'payload_content_type'")
	}
	ct, binary, ok := normalizeContentType(*req.PayloadContentType)
	if !ok {
		return nil, secretSchemaError("payload_content_type is not one of %s. Invalid property: 'payload_content_type'", supportedSecretContentTypes)
	}
	sec.ContentType = ct
	enc := ""
	if req.PayloadContentEncoding != nil {
		enc = *req.PayloadContentEncoding
		if enc != "base64" {
			return nil, secretSchemaError("'%s' is not one of ['base64']. Invalid property: 'payload_content_encoding'", enc)
		}
	}
	switch {
	case binary && enc != "base64":
		return nil, secretSchemaError("payload_content_encoding is not one of ['base64', 'binary']. Invalid property: 'payload_content_encoding'")
	case !binary && enc != "":
		return nil, secretSchemaError("payload_content_encoding is not one of None. Invalid property: 'payload_content_encoding'")
	}
	if len(*req.Payload) > engine.MaxSecretPayload {
		return nil, engine.Errorf(engine.ErrTooLarge, "Provided information too large to process")
	}
	payload := strings.TrimSpace(*req.Payload)
	if payload == "" {
		return nil, secretSchemaError("If 'payload' specified, must be non empty. Invalid property: 'payload'")
	}
	if binary {
		clean := strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
				return -1
			}
			return r
		}, payload)
		sec.Payload, err = base64.StdEncoding.DecodeString(clean)
		if err != nil {
			return nil, secretSchemaError("Invalid payload for payload_content_encoding. Invalid property: 'payload'")
		}
	} else {
		sec.Payload = []byte(payload)
	}
	return sec, nil
}

// parseISOTime reads the ISO 8601 forms oslo's parse_isotime accepts most
// often; a time without a zone is UTC.
func parseISOTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

func (s *server) kmCreate(w http.ResponseWriter, r *http.Request) {
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		s.writeKMError(w, r, newHTTPError(http.StatusUnsupportedMediaType,
			"Unexpected content type. Expected content types are: ['application/json']"))
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, kmMaxRequestBody+1))
	if err != nil {
		s.writeKMError(w, r, newHTTPError(http.StatusBadRequest, "Could not read the request body."))
		return
	}
	if len(b) > kmMaxRequestBody {
		s.writeKMError(w, r, newHTTPError(http.StatusRequestEntityTooLarge, "Provided information too large to process"))
		return
	}
	sec, err := secretFromRequest(b)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	out, err := s.o.KeyManager.Create(r.Context(), sec)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	ref := secretRef(r, out.ID)
	w.Header().Set("Location", ref)
	writeJSON(w, http.StatusCreated, map[string]string{"secret_ref": ref})
}

// wantsJSON is Barbican's is_json_request_accept.
func wantsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return a == "" || a == "*/*" || strings.Contains(a, "application/json")
}

func (s *server) kmGet(w http.ResponseWriter, r *http.Request) {
	id, err := secretID(r)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	if !wantsJSON(r) {
		// Barbican's deprecated way to read a payload.
		s.kmWritePayload(w, r, id)
		return
	}
	sec, err := s.o.KeyManager.Get(r.Context(), id)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, secretJSON(r, sec))
}

func (s *server) kmPayload(w http.ResponseWriter, r *http.Request) {
	id, err := secretID(r)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	s.kmWritePayload(w, r, id)
}

// kmWritePayload answers with a secret's payload in the media type asked
// for (the stored one by default). As Barbican, any supported type may be
// asked for: text/plain only if the payload is UTF-8 text (a PEM
// certificate is), which is what `barbican secret get --payload` asks for.
func (s *server) kmWritePayload(w http.ResponseWriter, r *http.Request, id string) {
	sec, err := s.o.KeyManager.Payload(r.Context(), id)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	ct := sec.ContentType
	if a := strings.TrimSpace(r.Header.Get("Accept")); a != "" && a != "*/*" {
		want, binary, ok := normalizeContentType(a)
		if !ok || (!binary && !utf8.Valid(sec.Payload)) {
			s.writeKMError(w, r, newHTTPError(http.StatusNotAcceptable,
				"Wrong payload content-type: the secret's payload is %s and cannot be returned as %s", sec.ContentType, a))
			return
		}
		ct = want
	}
	if ct == "text/plain" {
		ct = "text/plain; charset=utf-8"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(sec.Payload)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(sec.Payload)
}

func (s *server) kmDelete(w http.ResponseWriter, r *http.Request) {
	id, err := secretID(r)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	if err := s.o.KeyManager.Delete(r.Context(), id); err != nil {
		s.writeKMError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) kmList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	intParam := func(name string, def int) (int, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, newHTTPError(http.StatusBadRequest, "URI provided invalid query string parameters.")
		}
		return n, nil
	}
	offset, err := intParam("offset", 0)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	limit, err := intParam("limit", kmDefaultLimit)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	limit = min(limit, kmMaxLimit)
	bits, _ := strconv.Atoi(q.Get("bits")) // Barbican ignores a bad value
	f := engine.SecretFilter{Name: q.Get("name"), SecretType: q.Get("secret_type"), Algorithm: q.Get("alg"), Mode: q.Get("mode"), BitLength: bits}
	secrets, err := s.o.KeyManager.List(r.Context(), f)
	if err != nil {
		s.writeKMError(w, r, err)
		return
	}
	total := len(secrets)
	page := secrets[min(offset, total):min(offset+limit, total)]
	list := make([]map[string]any, 0, len(page))
	for _, sec := range page {
		list = append(list, secretJSON(r, sec))
	}
	out := map[string]any{"secrets": list, "total": total}
	nav := func(off int) string {
		v := url.Values{"limit": {strconv.Itoa(limit)}, "offset": {strconv.Itoa(off)}}
		return fmt.Sprintf("%s/v1/secrets?%s", baseURL(r), v.Encode())
	}
	if len(page) > 0 && offset+limit < total {
		out["next"] = nav(offset + limit)
	}
	if len(page) > 0 && offset > 0 {
		out["previous"] = nav(max(offset-limit, 0))
	}
	writeJSON(w, http.StatusOK, out)
}
