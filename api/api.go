package api

import (
	"context"
	"io"
	"log/slog"
	"net/http"

	"github.com/mosaicimg/mosaic/engine"
)

// Images is what the Glance handlers need from the engine; *engine.Service
// implements it.
type Images interface {
	Create(ctx context.Context, img *engine.Image) (*engine.Image, error)
	Get(ctx context.Context, id string) (*engine.Image, error)
	List(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error)
	Update(ctx context.Context, id string, mutate func(*engine.Image) error) (*engine.Image, error)
	Delete(ctx context.Context, id string) error
	Upload(ctx context.Context, id string, r io.Reader) (*engine.Image, error)
	Open(ctx context.Context, id string) (*engine.ImageReader, *engine.Image, error)
}

// Stats is the storage usage report the info endpoint serves.
type Stats interface {
	Usage(ctx context.Context) (any, error)
}

// Options configure the handler.
type Options struct {
	Images Images
	// Usage, if set, is reported under "mosaic" in GET /v2/info/usage.
	Usage Stats
	// Cache is the node's image cache (the /v2/cache API); nil answers
	// as Glance without image_cache_dir.
	Cache  Cache
	Logger *slog.Logger
	// KeyManager, if set, serves the Barbican v1 secrets subset under /v1.
	KeyManager KeyManager
	// MaxJSONBody bounds JSON request bodies; 0 means 1 MiB.
	MaxJSONBody int64
}

type server struct {
	o   Options
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the HTTP handler for the Glance v2 API.
func New(o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxJSONBody == 0 {
		o.MaxJSONBody = 1 << 20
	}
	s := &server{o: o, log: o.Logger, mux: http.NewServeMux()}
	s.routes()
	return s.middleware(s.mux)
}

// route registers a handler for a path and the methods it allows; other
// methods get 405 with an Allow header, as Glance answers.
func (s *server) route(path string, handlers map[string]http.HandlerFunc) {
	allow := ""
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
		if _, ok := handlers[m]; ok {
			if allow != "" {
				allow += ", "
			}
			allow += m
		}
	}
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		h, ok := handlers[r.Method]
		if !ok {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, errMethodNotAllowed(r.Method))
			return
		}
		h(w, r)
	})
}

func (s *server) routes() {
	s.mux.HandleFunc("/{$}", s.versions(http.StatusMultipleChoices))
	s.route("/versions", map[string]http.HandlerFunc{"GET": s.versions(http.StatusOK)})
	s.mux.HandleFunc("/v2", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", baseURL(r)+"/v2/")
		w.Header().Set("Content-Type", "text/plain; charset=utf8")
		w.WriteHeader(http.StatusFound)
	})
	s.route("/v2/schemas/image", map[string]http.HandlerFunc{"GET": s.schema("image")})
	s.route("/v2/schemas/images", map[string]http.HandlerFunc{"GET": s.schema("images")})
	s.route("/v2/images", map[string]http.HandlerFunc{"GET": s.listImages, "POST": s.createImage})
	s.route("/v2/images/{image_id}", map[string]http.HandlerFunc{
		"GET": s.showImage, "DELETE": s.deleteImage,
	})
	s.route("/v2/images/{image_id}/file", map[string]http.HandlerFunc{
		"GET": s.downloadImage, "PUT": s.uploadImage,
	})
	s.route("/v2/info/usage", map[string]http.HandlerFunc{"GET": s.usage})
	s.cacheRoutes()
	s.keyManagerRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errNotFoundPath)
	})
}
