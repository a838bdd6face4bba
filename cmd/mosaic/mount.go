package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/mosaicimg/mosaic/api"
	"github.com/mosaicimg/mosaic/api/auth"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/fusefs"
	"github.com/mosaicimg/mosaic/raftmeta"
	"github.com/mosaicimg/mosaic/replication"
)

// mountConfig is `mosaic mount`'s configuration: a hypervisor host that
// follows the cluster's metadata as a Raft non-voter, owns no chunks, and
// serves the image tree from a bounded cache of chunks fetched from the
// storage nodes.
type mountConfig struct {
	dir        string
	dataDir    string
	apiAddr    string
	raftAddr   string
	nodeID     string
	logLevel   string
	cacheSize  int64
	memCache   int64
	readAhead  int
	fetchLimit time.Duration
	leaseTTL   time.Duration

	imageCacheDir   string
	imageCacheBytes int64
	cacheInUseAfter time.Duration
	passthrough     bool
	verifySigs      bool
	trustedCA       stringList
	cluster         clusterFlags
	// auth guards the cache API as on storage nodes; authn is what it built.
	auth  authFlags
	authn auth.Authenticator
}

func mountCommand(ctx context.Context, args []string) error {
	var c mountConfig
	fs := newFlagSet("mount")
	fs.StringVar(&c.cluster.join, "cluster", "", "API addresses (host:port, comma-separated) of storage nodes to join through; keep it on restarts")
	fs.StringVar(&c.dataDir, "data-dir", "./mosaic-mount", "directory for the replicated metadata, the chunk cache and the node ID")
	fs.StringVar(&c.apiAddr, "api-addr", "127.0.0.1:9494", "listen address of the host's API: the cache API (/v2/cache) and node-to-node requests")
	fs.StringVar(&c.raftAddr, "raft-addr", "127.0.0.1:9595", "Raft listen address (the leader replicates metadata to it)")
	fs.StringVar(&c.nodeID, "node-id", "", "stable node ID (default: generated once and kept in the data dir)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Int64Var(&c.cacheSize, "cache-size", 10<<30, "bytes of fetched chunks kept on local disk (uncompressed size); least recently used chunks are evicted beyond it")
	fs.Int64Var(&c.memCache, "chunk-cache-bytes", 256<<20, "decoded chunk cache in memory, in bytes")
	fs.IntVar(&c.readAhead, "read-ahead-chunks", 16, "chunks fetched ahead of a sequential reader (a cold boot's serial reads wait on the network without it)")
	fs.DurationVar(&c.fetchLimit, "fetch-timeout", 5*time.Second, "bound on one chunk request to one storage node before the next owner is asked")
	fs.DurationVar(&c.leaseTTL, "lease-ttl", 2*time.Minute, "in-use lease of open images (renewed every quarter): how long a deleted image's chunks stay protected from GC after this host dies")
	fs.StringVar(&c.imageCacheDir, "image-cache-dir", "", "where the image cache (PUT /v2/cache/{id}) keeps complete image copies (default: DATA-DIR/image-cache)")
	fs.Int64Var(&c.imageCacheBytes, "image-cache-max-size", 10<<30, "image cache size in bytes; least recently used copies are pruned beyond it")
	fs.DurationVar(&c.cacheInUseAfter, "image-cache-in-use-after", 30*time.Second, "cache an image held open on the mount this long, so that its next opens use FUSE passthrough (0: only PUT /v2/cache fills the cache)")
	fs.BoolVar(&c.passthrough, "mount-passthrough", true, "serve images that have a complete copy in the image cache through FUSE passthrough (Linux 6.9+, root)")
	fs.BoolVar(&c.verifySigs, "verify-signatures", false, "verify signed images before they are opened and refuse (EACCES) those that fail")
	fs.Var(&c.trustedCA, "trusted-ca", "with --verify-signatures: PEM file of certificates signing certificates must chain to (repeatable)")
	fs.StringVar(&c.cluster.secret, "cluster-secret", "", "the cluster's shared secret (prefer MOSAIC_CLUSTER_SECRET or --cluster-secret-file)")
	fs.StringVar(&c.cluster.secretFile, "cluster-secret-file", "", "read the cluster secret from this file")
	fs.StringVar(&c.cluster.advertiseAPI, "advertise-api", "", "API address other nodes use to reach this host (default: --api-addr)")
	fs.StringVar(&c.cluster.advertiseRaft, "advertise-raft", "", "Raft address other nodes use to reach this host (default: --raft-addr)")
	c.auth.register(fs)
	// Accept DIR before or after the flags.
	// (The environment is applied once, before the first part.)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var rest []string
	for fs.NArg() > 0 {
		rest = append(rest, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
	}
	if len(rest) != 1 {
		return errors.New("usage: mosaic mount --cluster ADDR[,ADDR...] [flags] DIR")
	}
	c.dir = rest[0]
	if c.cluster.join == "" {
		return errors.New("mount: --cluster is required (API addresses of storage nodes)")
	}
	if c.leaseTTL < 4*time.Second {
		return fmt.Errorf("mount: --lease-ttl %v: must be at least 4s", c.leaseTTL)
	}
	if c.cacheSize <= 0 {
		return fmt.Errorf("mount: --cache-size %d: must be positive", c.cacheSize)
	}
	if err := c.resolveCluster(); err != nil {
		return err
	}
	log, err := newLogger(c.logLevel)
	if err != nil {
		return err
	}
	if c.authn, err = c.auth.authenticator(c.apiAddr, log); err != nil {
		return err
	}
	if isLoopback(c.raftAddr) && c.cluster.advertiseRaft == "" {
		for _, a := range c.cluster.joinAddrs() {
			if !isLoopback(a) {
				log.Warn("the Raft address is loopback but the cluster is not: the leader cannot replicate to this host (set --raft-addr or --advertise-raft)",
					"raft", c.raftAddr, "cluster", a)
				break
			}
		}
	}
	n, err := startMountHost(ctx, c, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	n.log.Info("shutting down")
	return n.close()
}

// resolveCluster reads the secret file and fills defaults (the part of
// serve's clusterFlags.resolve a mount host uses).
func (c *mountConfig) resolveCluster() error {
	f := &c.cluster
	f.nonVoter = true
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return fmt.Errorf("cluster secret file: %w", err)
		}
		f.secret = strings.TrimSpace(string(b))
	}
	if f.secret == "" {
		return errors.New("a cluster secret is required to join a cluster (--cluster-secret-file, MOSAIC_CLUSTER_SECRET or --cluster-secret)")
	}
	if len(f.secret) < 16 {
		return errors.New("the cluster secret must be at least 16 characters")
	}
	if f.advertiseAPI == "" {
		f.advertiseAPI = c.apiAddr
	}
	return nil
}

// startMountHost wires a mount host: Raft non-voter → Service over a
// CachingStore (local Pebble cache in front of a replication.Fetcher) →
// FUSE tree, plus the cache API and the internal status endpoints.
func startMountHost(ctx context.Context, c mountConfig, log *slog.Logger) (_ *node, err error) {
	n := &node{log: log}
	defer func() {
		if err != nil {
			_ = n.close()
		}
	}()
	if c.nodeID, err = prepareDataDir(c.dataDir, c.nodeID); err != nil {
		return nil, err
	}
	log = log.With("node", c.nodeID)
	n.log = log

	hc := nodeHTTPClient(c.apiAddr)
	meta, err := raftmeta.Open(raftmeta.Config{
		NodeID: c.nodeID, Dir: filepath.Join(c.dataDir, "raft"), RaftAddr: c.raftAddr,
		AdvertiseAddr: c.cluster.advertiseRaft, APIAddr: c.cluster.advertiseAPI,
		NonVoter: true, Secret: c.cluster.secret, HTTPClient: hc, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	n.onClose(meta.Close)
	members := replication.MembersFunc(func() []replication.Member {
		nodes := meta.Nodes()
		out := make([]replication.Member, len(nodes))
		for i, ni := range nodes {
			out[i] = replication.Member{ID: ni.ID, Addr: ni.APIAddr, Storage: ni.Storage()}
		}
		return out
	})
	fetcher, err := replication.NewFetcher(replication.Config{SelfID: c.nodeID, Secret: c.cluster.secret,
		HTTPClient: hc, Logger: log, RequestTimeout: c.fetchLimit}, members)
	if err != nil {
		return nil, err
	}
	local, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(c.dataDir, "chunk-cache"), Logger: log})
	if err != nil {
		return nil, err
	}
	n.onClose(local.Close)
	chunks, err := engine.NewCachingStore(ctx, local, fetcher, engine.CachingStoreConfig{MaxBytes: c.cacheSize, Logger: log})
	if err != nil {
		return nil, err
	}
	rc := engine.DefaultReaderConfig()
	rc.ReadAhead = c.readAhead
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: c.nodeID, ChunkCacheBytes: c.memCache, Reader: rc},
		meta, chunks, engine.NewPins(), log)
	if err != nil {
		return nil, err
	}
	if c.imageCacheDir == "" {
		c.imageCacheDir = filepath.Join(c.dataDir, "image-cache")
	}
	imageCache, err := engine.OpenImageCache(engine.ImageCacheConfig{
		Dir: c.imageCacheDir, MaxBytes: c.imageCacheBytes, CacheInUseAfter: c.cacheInUseAfter, Logger: log,
	}, svc)
	if err != nil {
		return nil, err
	}
	n.onClose(imageCache.Close)

	// Join (or rejoin: idempotent) in the background: a host restarting
	// while the storage nodes are down still serves what it has cached.
	joinCtx, stopJoin := context.WithCancel(ctx)
	joined := make(chan struct{})
	go func() {
		defer close(joined)
		addrs := c.cluster.joinAddrs()
		if err := meta.JoinVia(joinCtx, addrs); err != nil {
			if joinCtx.Err() == nil {
				log.Error("join the cluster as a non-voter", "via", addrs, "err", err)
			}
			return
		}
		log.Info("joined the cluster as a non-voter", "via", addrs)
	}()
	n.onClose(func() error { stopJoin(); <-joined; return nil })

	// Open images hold an in-use lease cluster-wide (keeps their chunks
	// from every storage node's GC after a delete); released after the
	// unmount (closers run in reverse).
	open := fusefs.NewOpenImages()
	n.onClose(newLeaseKeeper(meta, c.nodeID, open, c.leaseTTL, log).start())
	fo, err := fuseOptions(svc, imageCache, open, c.passthrough, c.verifySigs, c.trustedCA, log)
	if err != nil {
		return nil, err
	}
	fsrv, err := fusefs.Mount(c.dir, svc, fo)
	if err != nil {
		return nil, err
	}
	n.onClose(func() error { return unmountWhenIdle(fsrv, c.dir, log) })
	log.Info("image tree mounted", "dir", c.dir, "cache_size", c.cacheSize)

	// The API answers once the tree is mounted: /versions doubles as the
	// host's readiness check.
	ln, err := net.Listen("tcp", c.apiAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", c.apiAddr, err)
	}
	srv := &http.Server{
		Handler:           mountHostHandler(c, meta, chunks, svc, imageCache, log),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	n.onClose(func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	log.Info("mount host API listening", "addr", ln.Addr().String(), "raft", c.raftAddr)
	return n, nil
}

// unmountWhenIdle unmounts the tree once no file is open: running VMs keep
// reading while the host is asked to stop. A second SIGINT or SIGTERM
// detaches the mount lazily instead (the open files then fail).
func unmountWhenIdle(fsrv *fusefs.Server, dir string, log *slog.Logger) error {
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	for warned := false; ; warned = true {
		err := fsrv.Unmount()
		if err == nil {
			return nil
		}
		if !warned {
			log.Warn("images are open: waiting for them to close before unmounting (signal again to detach now; open files then fail)",
				"dir", dir, "open_files", fsrv.OpenImages().Open(), "err", err)
		}
		select {
		case sig := <-again:
			log.Warn("signal while waiting for open files: detaching the mount", "signal", sig)
			if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
				if out, err2 := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); err2 != nil {
					return fmt.Errorf("detach %s: %w (fusermount3: %v: %s)", dir, err, err2, strings.TrimSpace(string(out)))
				}
			}
			return fmt.Errorf("unmount %s: detached with files open", dir)
		case <-time.After(time.Second):
		}
	}
}

// mountHostHandler serves the Glance cache API (and version discovery)
// from the host's node-local image cache, and the internal status
// endpoints; a mount host serves no images, uploads or chunks.
func mountHostHandler(c mountConfig, meta *raftmeta.Node, chunks *engine.CachingStore, svc *engine.Service,
	imageCache *engine.ImageCache, log *slog.Logger) http.Handler {
	glance := api.New(api.Options{Images: svc, Cache: imageCache, Logger: log, Auth: c.authn})
	mux := http.NewServeMux()
	mux.Handle("/internal/", api.NewInternal(api.InternalOptions{
		Secret: c.cluster.secret, Reporter: &mountReporter{id: c.nodeID, chunks: chunks, meta: meta}, Logger: log,
	}))
	for _, p := range []string{"/versions", "/v2/cache", "/v2/cache/"} {
		mux.Handle(p, glance)
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			glance.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"code": 404, "title": "Not Found", "message": %q}`,
			"this is a mosaic mount host: it serves only the cache API (/v2/cache); use a storage node's API for "+strings.TrimPrefix(r.URL.Path, "/"))
	}))
	return mux
}

// mountReporter answers `mosaic cluster status` for a mount host: its
// chunk cache instead of a store, and no repair.
type mountReporter struct {
	id     string
	chunks *engine.CachingStore
	meta   *raftmeta.Node
}

// mountHostStatus is a mount host's node report: the storage report's
// fields plus the chunk cache's counters.
type mountHostStatus struct {
	replication.NodeStatus
	Cache engine.CachingStats `json:"chunk_cache"`
}

func (m *mountReporter) NodeStatus(context.Context) (any, error) {
	st := m.chunks.Stats()
	return mountHostStatus{
		NodeStatus: replication.NodeStatus{ID: m.id, Store: engine.StoreUsage{Chunks: int64(st.Chunks), StoredBytes: st.UsedBytes}},
		Cache:      st,
	}, nil
}

func (m *mountReporter) ClusterStatus(ctx context.Context) (any, error) {
	self, _ := m.NodeStatus(ctx)
	return struct {
		Meta  any   `json:"meta"`
		Nodes []any `json:"nodes"`
	}{Meta: m.meta.Status(), Nodes: []any{self}}, nil
}
