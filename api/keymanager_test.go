package api

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
)

func TestNormalizeContentType(t *testing.T) {
	cases := []struct {
		in     string
		norm   string
		binary bool
		ok     bool
	}{
		{"text/plain", "text/plain", false, true},
		{"text/plain;charset=utf-8", "text/plain", false, true},
		{"TEXT/PLAIN; charset=UTF-8", "text/plain", false, true},
		{"text/plain; charset=latin1", "", false, false},
		{"application/octet-stream", "application/octet-stream", true, true},
		{"application/pkix-cert", "application/pkix-cert", true, true},
		{"application/pkcs8", "application/pkcs8", true, true},
		{"application/json", "", false, false},
		{"application/octet-stream; charset=utf-8", "", false, false},
	}
	for _, c := range cases {
		norm, binary, ok := normalizeContentType(c.in)
		if norm != c.norm || binary != c.binary || ok != c.ok {
			t.Errorf("%q: %q %v %v, want %q %v %v", c.in, norm, binary, ok, c.norm, c.binary, c.ok)
		}
	}
}

func TestSecretFromRequest(t *testing.T) {
	body := func(m map[string]any) []byte {
		b, _ := json.Marshal(m)
		return b
	}
	ok := map[string]any{"name": " cert ", "secret_type": "certificate", "payload": "aGVs\nbG8=",
		"payload_content_type": "application/octet-stream", "payload_content_encoding": "base64",
		"expiration": "2099-01-02T03:04:05", "bit_length": 256, "algorithm": "aes", "mode": "cbc"}
	s, err := secretFromRequest(body(ok))
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "cert" || string(s.Payload) != "hello" || s.ContentType != "application/octet-stream" ||
		s.BitLength != 256 || s.Expiration == nil || s.Expiration.Year() != 2099 {
		t.Fatalf("parsed %+v", s)
	}
	text, err := secretFromRequest(body(map[string]any{"secret_type": "certificate", "payload": "-----BEGIN X-----",
		"payload_content_type": "text/plain"}))
	if err != nil || string(text.Payload) != "-----BEGIN X-----" || text.ContentType != "text/plain" {
		t.Fatalf("text payload: %+v %v", text, err)
	}
	if s, _ := secretFromRequest(body(map[string]any{"payload": "x", "payload_content_type": "text/plain"})); s.SecretType != "opaque" {
		t.Fatalf("default secret_type %q, want Barbican's opaque", s.SecretType)
	}
	with := func(k string, v any) []byte {
		m := map[string]any{}
		for kk, vv := range ok {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return body(m)
	}
	for _, c := range []struct {
		b    []byte
		want string
	}{
		{[]byte(`{"name":`), "Malformed JSON"},
		{[]byte(`[1]`), "Malformed JSON"},
		{with("name", 7), "is not of the expected type. Invalid property: 'name'"},
		{with("name", strings.Repeat("n", 256)), "is too long"},
		{with("bit_length", 0), "out of range"},
		{with("expiration", "next week"), "Invalid date for 'expiration'"},
		{with("payload", nil), "needs the payload in the POST"},
		{with("payload", "  "), "must be non empty"},
		{with("payload_content_type", nil), "'payload_content_type' must also be supplied"},
		{with("payload_content_type", "image/png"), "payload_content_type is not one of"},
		{with("payload_content_encoding", "hex"), "'hex' is not one of ['base64']"},
		{with("payload_content_encoding", nil), "payload_content_encoding is not one of ['base64', 'binary']"},
		{with("payload", "!!!"), "Invalid payload for payload_content_encoding"},
		{with("payload", strings.Repeat("A", engine.MaxSecretPayload+4)), "too large"},
	} {
		_, err := secretFromRequest(c.b)
		status, msg := statusFor(err)
		if err == nil || !strings.Contains(msg, c.want) {
			t.Errorf("%s: %v (%d %q), want %q", c.b, err, status, msg, c.want)
		}
		if !errors.Is(err, engine.ErrTooLarge) && status != 400 {
			t.Errorf("%s: status %d, want 400", c.b, status)
		}
	}
}
