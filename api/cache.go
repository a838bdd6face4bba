package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// Cache is the node's image cache behind Glance's cache API (Image API
// 2.14+); *engine.ImageCache implements it and enforces the admin-only
// policies. Cache state is per node, as in Glance.
type Cache interface {
	State(ctx context.Context) (*engine.CacheState, error)
	Queue(ctx context.Context, id string) error
	Delete(ctx context.Context, id string) error
	Clear(ctx context.Context, target engine.ClearTarget) (cached, queued int, err error)
}

func (s *server) cacheRoutes() {
	s.route("/v2/cache", map[string]http.HandlerFunc{"GET": s.cacheState, "DELETE": s.clearCache})
	s.route("/v2/cache/{image_id}", map[string]http.HandlerFunc{"PUT": s.queueImage, "DELETE": s.deleteCached})
}

// noCache answers as Glance does without image_cache_dir: the policy
// first (403 for non-admins), then 404.
func (s *server) noCache(w http.ResponseWriter, r *http.Request, act engine.Action) bool {
	if s.o.Cache != nil {
		return false
	}
	if err := engine.Authorize(r.Context(), act, engine.Target{}); err != nil {
		s.writeError(w, r, err)
		return true
	}
	s.writeError(w, r, newHTTPError(http.StatusNotFound, "Caching via API is not supported at this site."))
	return true
}

// epoch renders a time as Glance's cache does: float seconds.
func epoch(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (s *server) cacheState(w http.ResponseWriter, r *http.Request) {
	if s.noCache(w, r, engine.ActionCacheList) {
		return
	}
	st, err := s.o.Cache.State(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cached := make([]map[string]any, 0, len(st.Cached))
	for _, c := range st.Cached {
		cached = append(cached, map[string]any{
			"image_id": c.ImageID, "hits": c.Hits, "size": c.Size,
			"last_accessed": epoch(c.LastAccessed), "last_modified": epoch(c.LastModified),
		})
	}
	writeJSON(w, http.StatusOK, map[string]any{"cached_images": cached, "queued_images": st.Queued})
}

func (s *server) queueImage(w http.ResponseWriter, r *http.Request) {
	if s.noCache(w, r, engine.ActionCacheImage) {
		return
	}
	if err := s.o.Cache.Queue(r.Context(), r.PathValue("image_id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *server) deleteCached(w http.ResponseWriter, r *http.Request) {
	if s.noCache(w, r, engine.ActionCacheDelete) {
		return
	}
	if err := s.o.Cache.Delete(r.Context(), r.PathValue("image_id")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) clearCache(w http.ResponseWriter, r *http.Request) {
	if s.noCache(w, r, engine.ActionCacheDelete) {
		return
	}
	target := engine.ClearTarget(strings.ToLower(r.Header.Get("X-Image-Cache-Clear-Target")))
	if _, _, err := s.o.Cache.Clear(r.Context(), target); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
