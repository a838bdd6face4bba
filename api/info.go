package api

import (
	"net/http"

	"github.com/mosaicimg/mosaic/engine"
)

func (s *server) importInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"import-methods": map[string]any{
		"description": "Import methods available.", "type": "array", "value": engine.ImportMethods,
	}})
}

func (s *server) storesInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"stores": []map[string]string{
		{"id": engine.StoreID, "description": "Mosaic deduplicating chunk store", "default": "true"},
	}})
}

func (s *server) storesDetail(w http.ResponseWriter, r *http.Request) {
	if err := engine.Authorize(r.Context(), engine.ActionStoresDetail, engine.Target{}); err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"stores": []map[string]any{{
		"id": engine.StoreID, "description": "Mosaic deduplicating chunk store", "default": "true",
		"type": "mosaic", "properties": map[string]any{},
	}}})
}

func (s *server) usage(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"usage": map[string]any{}}
	// The store-wide report counts every project's images: admins only.
	if s.o.Usage != nil && engine.Authorize(r.Context(), engine.ActionStoreUsage, engine.Target{}) == nil {
		u, err := s.o.Usage.Usage(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		out["mosaic"] = u
	}
	writeJSON(w, http.StatusOK, out)
}
