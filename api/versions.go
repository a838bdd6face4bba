package api

import (
	"encoding/json"
	"net/http"
)

// apiVersions are the minor versions advertised, newest first: Zed's list
// for a multi-store node without the cache API (2.14 and 2.16 add it).
var apiVersions = []string{"2.15", "2.13", "2.12", "2.11", "2.10", "2.9", "2.8", "2.7", "2.6", "2.5", "2.4", "2.3", "2.2", "2.1", "2.0"}

func (s *server) versions(status int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		type link struct {
			Rel  string `json:"rel"`
			Href string `json:"href"`
		}
		type version struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Links  []link `json:"links"`
		}
		href := baseURL(r) + "/v2/"
		vs := make([]version, 0, len(apiVersions))
		for i, v := range apiVersions {
			st := "SUPPORTED"
			if i == 0 {
				st = "CURRENT"
			}
			vs = append(vs, version{ID: "v" + v, Status: st, Links: []link{{Rel: "self", Href: href}}})
		}
		b, _ := json.Marshal(map[string]any{"versions": vs})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(b)
	}
}

// baseURL is the scheme and host the client used to reach us.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	return scheme + "://" + r.Host
}
