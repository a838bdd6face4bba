package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mosaicimg/mosaic/api/auth"
	"github.com/mosaicimg/mosaic/engine"
)

// Images is what the image handlers need from the engine; *engine.Service
// implements it. Every method acts for the caller in the context.
type Images interface {
	CreateImage(ctx context.Context, body map[string]json.RawMessage) (*engine.Image, error)
	ShowImage(ctx context.Context, id string) (*engine.Image, error)
	ListImages(ctx context.Context, q *engine.ListQuery) (*engine.ListPage, error)
	PatchImage(ctx context.Context, id string, ops []engine.PatchOp) (*engine.Image, error)
	DeleteImage(ctx context.Context, id string) error
	Deactivate(ctx context.Context, id string) error
	Reactivate(ctx context.Context, id string) error
	AddTag(ctx context.Context, id, tag string) error
	DeleteTag(ctx context.Context, id, tag string) error
}

// ImageData is what the data handlers need: upload, download, stage and import.
type ImageData interface {
	UploadData(ctx context.Context, id string, r io.Reader) (*engine.Image, error)
	OpenData(ctx context.Context, id string) (*engine.ImageReader, *engine.Image, error)
	Stage(ctx context.Context, id string, r io.Reader) error
	Import(ctx context.Context, id string, req *engine.ImportRequest, requestID string) (*engine.Task, error)
}

// Members is what the image-sharing handlers need.
type Members interface {
	AddMember(ctx context.Context, imageID, memberID string) (*engine.Member, error)
	ListMembers(ctx context.Context, imageID string) ([]*engine.Member, error)
	GetMember(ctx context.Context, imageID, memberID string) (*engine.Member, error)
	UpdateMember(ctx context.Context, imageID, memberID, status string) (*engine.Member, error)
	DeleteMember(ctx context.Context, imageID, memberID string) error
}

// Tasks is what the tasks handlers need.
type Tasks interface {
	ImageTasks(ctx context.Context, imageID string) ([]*engine.Task, error)
	ListTasks(ctx context.Context, q *engine.TaskListQuery) ([]*engine.Task, string, error)
	GetTask(ctx context.Context, id string) (*engine.Task, error)
	CreateTask(ctx context.Context, body map[string]json.RawMessage, requestID string) (*engine.Task, error)
}

// Stats is the storage usage report the info endpoint serves.
type Stats interface {
	Usage(ctx context.Context) (any, error)
}

// Options configure the handler.
type Options struct {
	// Images is required. Data, Members and Tasks default to Images when
	// it implements them (as *engine.Service does).
	Images  Images
	Data    ImageData
	Members Members
	Tasks   Tasks
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
	// Auth turns each request into the caller it acts for; nil means
	// auth.None (every request is Glance's unauthenticated context).
	Auth auth.Authenticator
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
	if o.Auth == nil {
		o.Auth = auth.None{}
	}
	if o.MaxJSONBody == 0 {
		o.MaxJSONBody = 1 << 20
	}
	if o.Data == nil {
		o.Data, _ = o.Images.(ImageData)
	}
	if o.Members == nil {
		o.Members, _ = o.Images.(Members)
	}
	if o.Tasks == nil {
		o.Tasks, _ = o.Images.(Tasks)
	}
	if o.Data == nil || o.Members == nil || o.Tasks == nil {
		panic("api: Options needs Data, Members and Tasks (or an Images implementing them)")
	}
	s := &server{o: o, log: o.Logger, mux: http.NewServeMux()}
	s.routes()
	return s.middleware(s.mux)
}

// route registers a handler for a path and the methods it allows; other
// methods get 405 with an Allow header, as Glance answers. GET and DELETE
// requests carrying a body get 400, as Glance's body_reject routes.
func (s *server) route(path string, handlers map[string]http.HandlerFunc) {
	var allowed []string
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
		if _, ok := handlers[m]; ok {
			allowed = append(allowed, m)
		}
	}
	allow := strings.Join(allowed, ", ")
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		h, ok := handlers[r.Method]
		if !ok {
			w.Header().Set("Allow", allow)
			s.writeError(w, r, errMethodNotAllowed(r.Method))
			return
		}
		if (r.Method == http.MethodGet || r.Method == http.MethodDelete) && hasBody(r) {
			s.writeError(w, r, newHTTPError(http.StatusBadRequest, "A body is not expected with this request."))
			return
		}
		h(w, r)
	})
}

func hasBody(r *http.Request) bool { return r.ContentLength > 0 || len(r.TransferEncoding) > 0 }

type handlers = map[string]http.HandlerFunc

func (s *server) routes() {
	s.mux.HandleFunc("/{$}", s.versions(http.StatusMultipleChoices))
	s.route("/versions", handlers{"GET": s.versions(http.StatusOK)})
	s.mux.HandleFunc("/v2", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", baseURL(r)+"/v2/")
		w.Header().Set("Content-Type", "text/plain; charset=utf8")
		w.WriteHeader(http.StatusFound)
	})
	for _, name := range []string{"image", "images", "member", "members", "task", "tasks"} {
		s.route("/v2/schemas/"+name, handlers{"GET": s.schema(name)})
	}

	s.route("/v2/images", handlers{"GET": s.listImages, "POST": s.createImage})
	s.route("/v2/images/{image_id}", handlers{"GET": s.showImage, "PATCH": s.patchImage, "DELETE": s.deleteImage})
	s.route("/v2/images/{image_id}/file", handlers{"GET": s.downloadImage, "PUT": s.uploadImage})
	s.route("/v2/images/{image_id}/stage", handlers{"PUT": s.stageImage})
	s.route("/v2/images/{image_id}/import", handlers{"POST": s.importImage})
	s.route("/v2/images/{image_id}/tasks", handlers{"GET": s.imageTasks})
	s.route("/v2/images/{image_id}/actions/deactivate", handlers{"POST": s.deactivate})
	s.route("/v2/images/{image_id}/actions/reactivate", handlers{"POST": s.reactivate})
	s.route("/v2/images/{image_id}/tags/{tag}", handlers{"PUT": s.addTag, "DELETE": s.deleteTag})
	s.route("/v2/images/{image_id}/members", handlers{"GET": s.listMembers, "POST": s.addMember})
	s.route("/v2/images/{image_id}/members/{member_id}", handlers{
		"GET": s.getMember, "PUT": s.updateMember, "DELETE": s.deleteMember,
	})
	s.route("/v2/stores/{store_id}/{image_id}", handlers{"DELETE": s.deleteFromStore})

	s.route("/v2/tasks", handlers{"GET": s.listTasks, "POST": s.createTask})
	s.route("/v2/tasks/{task_id}", handlers{"GET": s.getTask, "DELETE": s.deleteTask})

	s.route("/v2/info/import", handlers{"GET": s.importInfo})
	s.route("/v2/info/stores", handlers{"GET": s.storesInfo})
	s.route("/v2/info/stores/detail", handlers{"GET": s.storesDetail})
	s.route("/v2/info/usage", handlers{"GET": s.usage})
	s.cacheRoutes()
	s.keyManagerRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, errNotFoundPath)
	})
}
