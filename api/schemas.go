package api

import (
	"embed"
	"net/http"
)

// The schemas are Glance 25.1's documents (GET /v2/schemas/*), with one
// deliberate change: the image schema has no "stores" property, because the
// glance CLI turns every schema property into a command-line option and
// "--stores" collides with its own option of that name (docs/compat.md).
//
//go:embed schemas/*.json
var schemaFS embed.FS

func (s *server) schema(name string) http.HandlerFunc {
	body, err := schemaFS.ReadFile("schemas/" + name + ".json")
	if err != nil {
		panic("api: missing embedded schema " + name)
	}
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}
