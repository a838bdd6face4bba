package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mosaicimg/mosaic/api"
	"github.com/mosaicimg/mosaic/api/auth"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/fusefs"
)

type serveConfig struct {
	dataDir    string
	apiAddr    string
	raftAddr   string
	nodeID     string
	mountDir   string
	logLevel   string
	cacheBytes int64

	imageCacheDir   string
	imageCacheBytes int64
	cacheInUseAfter time.Duration
	passthrough     bool
	cluster         clusterFlags
	storage         storageFlags
	// verifySigs and trustedCA: the mount's signature verification.
	verifySigs bool
	trustedCA  stringList
	// importHosts, if set, are the only hosts web-download may use (any port).
	importHosts string
	// auth configures authentication; authn is what it built.
	auth  authFlags
	authn auth.Authenticator
}

func (c serveConfig) importConfig() engine.ImportConfig {
	if c.importHosts == "" {
		return engine.ImportConfig{}
	}
	return engine.ImportConfig{AllowedHosts: strings.Split(c.importHosts, ","), AnyPort: true}
}

func serve(ctx context.Context, args []string) error {
	var c serveConfig
	fs := newFlagSet("serve")
	fs.StringVar(&c.dataDir, "data-dir", "./mosaic-data", "directory for chunks, metadata and the node ID")
	fs.StringVar(&c.apiAddr, "api-addr", "127.0.0.1:9292", "Glance v2 API listen address")
	fs.StringVar(&c.raftAddr, "raft-addr", "127.0.0.1:9393", "Raft listen address")
	fs.StringVar(&c.nodeID, "node-id", "", "stable node ID (default: generated once and kept in the data dir)")
	fs.StringVar(&c.mountDir, "mount", "", "mount the read-only FUSE image tree at this directory")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.Int64Var(&c.cacheBytes, "chunk-cache-bytes", 256<<20, "decoded chunk cache size in bytes")
	fs.StringVar(&c.imageCacheDir, "image-cache-dir", "", "where the image cache (GET/PUT/DELETE /v2/cache) keeps complete image copies (default: DATA-DIR/image-cache)")
	fs.Int64Var(&c.imageCacheBytes, "image-cache-max-size", 10<<30, "image cache size in bytes; least recently used copies are pruned beyond it (Glance's image_cache_max_size)")
	fs.DurationVar(&c.cacheInUseAfter, "image-cache-in-use-after", 30*time.Second, "cache an image held open on the mount this long, so that its next opens use FUSE passthrough (0: only PUT /v2/cache fills the cache)")
	fs.BoolVar(&c.passthrough, "mount-passthrough", true, "serve images that have a complete copy in the image cache through FUSE passthrough (Linux 6.9+, root)")
	c.cluster.register(fs)
	c.storage.register(fs)
	fs.BoolVar(&c.verifySigs, "verify-signatures", false, "with --mount: verify signed images before they are opened and refuse (EACCES) those that fail")
	fs.Var(&c.trustedCA, "trusted-ca", "with --verify-signatures: PEM file of certificates signing certificates must chain to (repeatable)")
	fs.StringVar(&c.importHosts, "import-allowed-hosts", "", "comma-separated hosts web-download may fetch from (default: any public host on ports 80/443)")
	c.auth.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := c.cluster.resolve(c.apiAddr, c.raftAddr); err != nil {
		return err
	}
	log, err := newLogger(c.logLevel)
	if err != nil {
		return err
	}
	if c.authn, err = c.auth.authenticator(c.apiAddr, log); err != nil {
		return err
	}
	n, err := startNode(ctx, c, log)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	return n.close()
}

// node is a running mosaic node; close stops it in reverse start order.
type node struct {
	log     *slog.Logger
	closers []func() error
}

func (n *node) onClose(f func() error) { n.closers = append(n.closers, f) }

func (n *node) close() error {
	var errs []error
	for i := len(n.closers) - 1; i >= 0; i-- {
		if err := n.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// fuseOptions is the FUSE tree's wiring shared by `serve --mount` and
// `mosaic mount`: open-image roots for GC, passthrough to the image cache's
// complete copies, and the signature gate when asked for.
func fuseOptions(svc *engine.Service, copies *engine.ImageCache, open *fusefs.OpenImages, passthrough, verifySigs bool, trustedCA stringList, log *slog.Logger) (fusefs.Options, error) {
	fo := fusefs.Options{Logger: log, OpenImages: open}
	if passthrough {
		fo.LocalCopies = copies
	}
	if verifySigs {
		trusted, err := loadCertPool(trustedCA)
		if err != nil {
			return fo, err
		}
		fo.Signatures = engine.NewSignatureGate(svc, engine.SignatureGateConfig{Trusted: trusted, Logger: log})
	}
	return fo, nil
}

// prepareDataDir creates the data directory and returns the node ID: the
// one given, or the one stored there (created on first start).
func prepareDataDir(dataDir, nodeID string) (string, error) {
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	if nodeID != "" {
		return nodeID, nil
	}
	return loadOrCreateNodeID(dataDir)
}

func startNode(ctx context.Context, c serveConfig, log *slog.Logger) (_ *node, err error) {
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

	chunks, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(c.dataDir, "chunks"), Logger: log,
		MemTableSize: c.storage.memtable})
	if err != nil {
		return nil, err
	}
	n.onClose(chunks.Close)

	cl, err := startCluster(ctx, n, c, chunks, log)
	if err != nil {
		return nil, err
	}
	svc, keys := cl.svc, cl.keys

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

	ln, err := net.Listen("tcp", c.apiAddr)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", c.apiAddr, err)
	}
	// Files open on this node's mount keep their images' chunks from GC,
	// even after the image is deleted (see fusefs.OpenImages).
	// In-use leases of mount hosts (and of other nodes' mounts) too.
	gcRoots := []engine.RootSource{cl.meta.LeaseRoots()}
	openImages := fusefs.NewOpenImages()
	if c.mountDir != "" {
		gcRoots = append(gcRoots, openImages)
		n.onClose(newLeaseKeeper(cl.meta, c.nodeID, openImages, 2*time.Minute, log).start())
	}
	gc := engine.NewCollector(cl.meta, cl.store, cl.pins, engine.GCConfig{Grace: c.storage.gcGrace}, log, gcRoots...)
	if c.storage.gcInterval > 0 {
		gcCtx, stopGC := context.WithCancel(context.Background())
		gcDone := make(chan struct{})
		go func() { defer close(gcDone); gc.Run(gcCtx, c.storage.gcInterval) }()
		n.onClose(func() error { stopGC(); <-gcDone; return nil })
	}
	mux := http.NewServeMux()
	mux.Handle("/internal/", cl.internal)
	mux.Handle("/", requireAdminFor(adminPrefix, c.authn,
		withStorageAdmin(api.New(api.Options{Images: svc, Usage: svc, Cache: imageCache, Logger: log, KeyManager: keys, Auth: c.authn}), gc, svc, log)))
	srv := &http.Server{
		Handler:           mux,
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
	cl.afterListen(ctx)
	log.Info("API listening", "addr", ln.Addr().String(), "raft", c.raftAddr, "data", c.dataDir)

	if c.mountDir != "" {
		fo, err := fuseOptions(svc, imageCache, openImages, c.passthrough, c.verifySigs, c.trustedCA, log)
		if err != nil {
			return nil, err
		}
		fsrv, err := fusefs.Mount(c.mountDir, svc, fo)
		if err != nil {
			return nil, err
		}
		n.onClose(func() error {
			if err := fsrv.Unmount(); err != nil {
				return fmt.Errorf("unmount %s: %w", c.mountDir, err)
			}
			return nil
		})
		log.Info("image tree mounted", "dir", c.mountDir)
	}
	return n, nil
}

func loadOrCreateNodeID(dir string) (string, error) {
	p := filepath.Join(dir, "node-id")
	b, err := os.ReadFile(p)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node ID: %w", err)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	id := "node-" + hex.EncodeToString(r[:])
	if err := os.WriteFile(p, []byte(id+"\n"), 0o640); err != nil {
		return "", fmt.Errorf("write node ID: %w", err)
	}
	return id, nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
