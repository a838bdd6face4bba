package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"

	"github.com/mosaicimg/mosaic/engine"
)

// Node-to-node endpoints, mounted under /internal/ (see NewInternal). They
// are not part of the Glance API: they answer only requests carrying the
// cluster secret in ClusterSecretHeader, never a user's token, and a node
// without a secret refuses them all.

// ClusterSecretHeader carries the cluster secret.
const ClusterSecretHeader = "X-Mosaic-Cluster-Secret"

// ClusterMeta is what the internal endpoints need from the metadata node
// (*raftmeta.Node implements it). Forwarded commands and their results are
// opaque bytes here: their format belongs to raftmeta.
type ClusterMeta interface {
	ApplyForwarded(ctx context.Context, cmd []byte) ([]byte, error)
	ReadIndex(ctx context.Context) (uint64, error)
	JoinNode(ctx context.Context, id, raftAddr, apiAddr string, voter bool) error
	Remove(ctx context.Context, id string) error
	Leave(ctx context.Context) error
}

// ChunkPeer is what the chunk endpoints need from this node's replication
// layer. The request and reply formats belong to it; this package only
// authenticates and routes.
type ChunkPeer interface {
	// LocalChunk returns a verified chunk from this node's store only.
	LocalChunk(ctx context.Context, id engine.ChunkID) ([]byte, error)
	// LocalChunks returns the reply body for a batch request of chunks
	// from this node's store (those it lacks are left out).
	LocalChunks(ctx context.Context, r io.Reader) ([]byte, error)
	// ReceiveChunks stores a batch of chunks and returns the reply body.
	ReceiveChunks(ctx context.Context, r io.Reader) ([]byte, error)
	// ClaimChunks reports which chunks are present and protects them from
	// this node's GC for a while; it returns the reply body.
	ClaimChunks(ctx context.Context, r io.Reader) ([]byte, error)
	// SyncChunks makes every chunk received so far durable.
	SyncChunks(ctx context.Context) error
}

// ClusterReporter reports the cluster's state for `mosaic cluster status`.
type ClusterReporter interface {
	// NodeStatus is this node's own report (chunk bytes, repair progress).
	NodeStatus(ctx context.Context) (any, error)
	// ClusterStatus gathers every node's report.
	ClusterStatus(ctx context.Context) (any, error)
}

// InternalOptions configure the internal handler. Nil parts answer 404.
type InternalOptions struct {
	Secret   string
	Meta     ClusterMeta
	Chunks   ChunkPeer
	Reporter ClusterReporter
	Logger   *slog.Logger
	// MaxBody bounds request bodies; 0 means 256 MiB.
	MaxBody int64
}

type internalServer struct {
	o   InternalOptions
	mux *http.ServeMux
}

// NewInternal returns the handler for the /internal/ endpoints.
func NewInternal(o InternalOptions) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBody == 0 {
		o.MaxBody = 256 << 20
	}
	s := &internalServer{o: o, mux: http.NewServeMux()}
	if o.Meta != nil {
		s.mux.HandleFunc("POST /internal/raft/apply", s.apply)
		s.mux.HandleFunc("GET /internal/raft/read-index", s.readIndex)
		s.mux.HandleFunc("POST /internal/cluster/join", s.join)
		s.mux.HandleFunc("POST /internal/cluster/remove", s.remove)
		s.mux.HandleFunc("POST /internal/cluster/leave", s.leave)
	}
	if o.Reporter != nil {
		s.mux.HandleFunc("GET /internal/cluster/status", s.report(o.Reporter.ClusterStatus))
		s.mux.HandleFunc("GET /internal/node/status", s.report(o.Reporter.NodeStatus))
	}
	if o.Chunks != nil {
		// The leader's liveness probe (raftmeta/liveness.go): a node that
		// answers here serves chunks.
		s.mux.HandleFunc("GET /internal/ping", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
		s.mux.HandleFunc("GET /internal/chunks/{id}", s.getChunk)
		s.mux.HandleFunc("POST /internal/chunks/get", s.stream(o.Chunks.LocalChunks))
		s.mux.HandleFunc("POST /internal/chunks/put", s.stream(o.Chunks.ReceiveChunks))
		s.mux.HandleFunc("POST /internal/chunks/claim", s.stream(o.Chunks.ClaimChunks))
		s.mux.HandleFunc("POST /internal/chunks/sync", s.sync)
	}
	return s
}

// ServeHTTP checks the cluster secret before anything else.
func (s *internalServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	got := r.Header.Get(ClusterSecretHeader)
	if s.o.Secret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.o.Secret)) != 1 {
		s.fail(w, r, http.StatusForbidden, "forbidden", "node-to-node endpoint: missing or wrong cluster secret")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.o.MaxBody)
	s.mux.ServeHTTP(w, r)
}

// internalStatus is the one translation of engine errors for this edge.
// 421 means "not the leader; nothing was done": the sender may retry.
func internalStatus(err error) int {
	switch {
	case errors.Is(err, engine.ErrNotLeader):
		return http.StatusMisdirectedRequest
	case errors.Is(err, engine.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, engine.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, engine.ErrExists), errors.Is(err, engine.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, engine.ErrCorrupt):
		return http.StatusUnprocessableEntity
	case errors.Is(err, engine.ErrNoSpace):
		return http.StatusInsufficientStorage
	case errors.Is(err, engine.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusInternalServerError
}

func (s *internalServer) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	msg, user := engine.UserMessage(err)
	if !user {
		msg = err.Error()
	}
	status := internalStatus(err)
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelWarn
	}
	s.o.Logger.Log(r.Context(), level, "internal request failed", "path", r.URL.Path, "status", status, "err", err)
	writeJSON(w, status, map[string]any{"error": engine.ErrorKind(err), "message": msg, "user": user})
}

func (s *internalServer) fail(w http.ResponseWriter, r *http.Request, status int, kind, msg string) {
	s.o.Logger.Warn("internal request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", status, "reason", msg)
	writeJSON(w, status, map[string]any{"error": kind, "message": msg})
}

func (s *internalServer) raw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (s *internalServer) apply(w http.ResponseWriter, r *http.Request) {
	cmd, err := io.ReadAll(r.Body)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	out, err := s.o.Meta.ApplyForwarded(r.Context(), cmd)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.raw(w, out)
}

func (s *internalServer) readIndex(w http.ResponseWriter, r *http.Request) {
	idx, err := s.o.Meta.ReadIndex(r.Context())
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]uint64{"index": idx})
}

func (s *internalServer) join(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raft_addr"`
		APIAddr  string `json:"api_addr"`
		Voter    bool   `json:"voter"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		s.writeErr(w, r, engine.Errorf(engine.ErrInvalid, "join: bad body: %v", err))
		return
	}
	if err := s.o.Meta.JoinNode(r.Context(), req.ID, req.RaftAddr, req.APIAddr, req.Voter); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *internalServer) remove(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.ID == "" {
		s.writeErr(w, r, engine.Errorf(engine.ErrInvalid, "remove: body must be {\"id\": NODE}"))
		return
	}
	if err := s.o.Meta.Remove(r.Context(), req.ID); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *internalServer) leave(w http.ResponseWriter, r *http.Request) {
	if err := s.o.Meta.Leave(r.Context()); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *internalServer) report(f func(context.Context) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r.Context())
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
}

func (s *internalServer) getChunk(w http.ResponseWriter, r *http.Request) {
	id, err := engine.ParseChunkID(r.PathValue("id"))
	if err != nil {
		s.writeErr(w, r, engine.Errorf(engine.ErrInvalid, "bad chunk ID: %v", err))
		return
	}
	b, err := s.o.Chunks.LocalChunk(r.Context(), id)
	if err != nil {
		s.writeErr(w, r, err)
		return
	}
	s.raw(w, b)
}

func (s *internalServer) stream(f func(context.Context, io.Reader) ([]byte, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		out, err := f(r.Context(), r.Body)
		if err != nil {
			s.writeErr(w, r, err)
			return
		}
		s.raw(w, out)
	}
}

func (s *internalServer) sync(w http.ResponseWriter, r *http.Request) {
	if err := s.o.Chunks.SyncChunks(r.Context()); err != nil {
		s.writeErr(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
