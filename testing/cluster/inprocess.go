package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mosaicimg/mosaic/api"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/raftmeta"
	"github.com/mosaicimg/mosaic/replication"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// inProcess runs nodes as goroutines of the test on 127.0.0.1, wired as
// cmd/mosaic wires them, with Raft and node-to-node HTTP on a faultNet.
type inProcess struct {
	t      testing.TB
	o      Options
	secret string
	fn     *faultNet
	mu     sync.Mutex
	nodes  []*ipNode
}

type ipNode struct {
	idx               int
	nonVoter          bool
	id, dir           string
	raftAddr, apiAddr string
	running           atomic.Bool
	closers           []func() error
	meta              *raftmeta.Node
	svc               *engine.Service
	bg                sync.WaitGroup
	cancel            context.CancelFunc
}

// StartInProcess starts n in-process nodes: node 0 bootstraps, the others
// join through it.
func StartInProcess(t testing.TB, n int, o Options) Cluster {
	c := &inProcess{t: t, o: o, secret: newSecret(), fn: newFaultNet()}
	t.Cleanup(func() {
		for i := range c.nodes {
			if c.nodes[i].running.Load() {
				c.stop(i, false)
			}
		}
	})
	for range n {
		c.Add()
	}
	return c
}

func (c *inProcess) Len() int             { return len(c.nodes) }
func (c *inProcess) URL(i int) string     { return "http://" + c.nodes[i].apiAddr }
func (c *inProcess) APIAddr(i int) string { return c.nodes[i].apiAddr }
func (c *inProcess) NodeID(i int) string  { return c.nodes[i].id }
func (c *inProcess) Secret() string       { return c.secret }
func (c *inProcess) Running(i int) bool   { return c.nodes[i].running.Load() }
func (c *inProcess) Partition(i int)      { c.fn.isolate(i, len(c.nodes)) }
func (c *inProcess) Heal()                { c.fn.heal() }

// Service returns node i's image service (in-process only), for tests that
// drive the engine directly.
func (c *inProcess) Service(i int) *engine.Service { return c.nodes[i].svc }

func (c *inProcess) Add() int { return c.add(false) }

func (c *inProcess) AddNonVoter() int { return c.add(true) }

// Readdress moves a stopped node to new Raft and API ports; its next
// Restart rejoins with them.
func (c *inProcess) Readdress(i int) {
	nd := c.nodes[i]
	nd.raftAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(c.t, "127.0.0.1"))
	nd.apiAddr = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(c.t, "127.0.0.1"))
}

func (c *inProcess) add(nonVoter bool) int {
	c.t.Helper()
	i := len(c.nodes)
	nd := &ipNode{
		idx: i, id: fmt.Sprintf("node%d", i), dir: c.t.TempDir(), nonVoter: nonVoter,
		raftAddr: fmt.Sprintf("127.0.0.1:%d", harness.FreePort(c.t, "127.0.0.1")),
		apiAddr:  fmt.Sprintf("127.0.0.1:%d", harness.FreePort(c.t, "127.0.0.1")),
	}
	c.nodes = append(c.nodes, nd)
	c.start(i, i == 0)
	return i
}

func (c *inProcess) Kill(i int) {
	c.t.Helper()
	c.stop(i, true)
}

func (c *inProcess) Restart(i int) {
	c.t.Helper()
	c.start(i, false)
}

// stop closes node i in reverse start order; abrupt first cuts its
// connections, as a dead process's would be.
func (c *inProcess) stop(i int, abrupt bool) {
	nd := c.nodes[i]
	if abrupt {
		c.fn.dropNode(i)
	}
	nd.cancel()
	nd.bg.Wait()
	for k := len(nd.closers) - 1; k >= 0; k-- {
		if err := nd.closers[k](); err != nil {
			c.t.Logf("stop node %d: %v", i, err)
		}
	}
	nd.closers = nil
	nd.running.Store(false)
}

func (c *inProcess) start(i int, bootstrap bool) {
	c.t.Helper()
	nd := c.nodes[i]
	log := slog.New(slog.NewTextHandler(testWriter{c.t, nd.id}, &slog.HandlerOptions{Level: slog.LevelWarn})).With("node", nd.id)
	if os.Getenv("MOSAIC_TEST_VERBOSE") != "" {
		log = slog.New(slog.NewTextHandler(testWriter{c.t, nd.id}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", nd.id)
	}
	onClose := func(f func() error) { nd.closers = append(nd.closers, f) }
	fail := func(err error) {
		for k := len(nd.closers) - 1; k >= 0; k-- {
			_ = nd.closers[k]()
		}
		nd.closers = nil
		c.t.Fatalf("start node %d: %v", i, err)
	}
	nw := c.fn.node(i)
	hc := &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return nw.Dial(ctx, addr) },
		MaxIdleConnsPerHost: 64,
	}}
	onClose(func() error { hc.CloseIdleConnections(); return nil })
	chunks, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(nd.dir, "chunks"), Logger: log})
	if err != nil {
		fail(err)
	}
	onClose(chunks.Close)
	ln, err := nw.Listen(nd.apiAddr)
	if err != nil {
		fail(err)
	}
	meta, err := raftmeta.Open(raftmeta.Config{
		NodeID: nd.id, Dir: filepath.Join(nd.dir, "raft"), RaftAddr: nd.raftAddr, APIAddr: nd.apiAddr,
		Bootstrap: bootstrap, NonVoter: nd.nonVoter, Secret: c.secret, HTTPClient: hc, Network: nw, Logger: log,
	})
	if err != nil {
		ln.Close()
		fail(err)
	}
	onClose(meta.Close)
	nd.meta = meta
	members := replication.MembersFunc(func() []replication.Member {
		nodes := meta.Nodes()
		out := make([]replication.Member, len(nodes))
		for k, ni := range nodes {
			out[k] = replication.Member{ID: ni.ID, Addr: ni.APIAddr, Storage: ni.Storage()}
		}
		return out
	})
	rcfg := replication.Config{SelfID: nd.id, Replicas: c.o.Replicas, Secret: c.secret, HTTPClient: hc, Logger: log}
	store, err := replication.NewStore(rcfg, chunks, members)
	if err != nil {
		fail(err)
	}
	onClose(store.Close)
	pins := engine.NewPins()
	keys := engine.NewKeyManager(meta, engine.KeyManagerConfig{})
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: nd.id, Certificates: keys}, meta, store, pins, log)
	if err != nil {
		fail(err)
	}
	nd.svc = svc
	peer := replication.NewPeer(rcfg, chunks, pins)
	onClose(peer.Close)
	repair := replication.NewRepairer(store, replication.LiveFunc(func(ctx context.Context) ([]engine.ChunkID, error) {
		imgs, err := meta.ListImages(ctx, func(img *engine.Image) bool {
			return img.HasData() && img.Status != engine.StatusDeleted
		})
		if err != nil {
			return nil, err
		}
		roots := make([]engine.ChunkID, len(imgs))
		for k, img := range imgs {
			roots[k] = img.ManifestRoot
		}
		return roots, nil
	}))
	onClose(repair.Close)
	reporter := replication.NewReporter(store, repair, func() any { return meta.Status() })
	mux := http.NewServeMux()
	mux.Handle("/internal/", api.NewInternal(api.InternalOptions{Secret: c.secret, Meta: meta, Chunks: peer, Reporter: reporter, Logger: log}))
	mux.Handle("/", api.New(api.Options{Images: svc, Usage: svc, Logger: log, KeyManager: keys}))
	// Handlers run on a context the node's stop cancels, and stop waits
	// for them before closing the stores (http.Server.Close does not).
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel = cancel
	var inflight sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inflight.Add(1)
			defer inflight.Done()
			mux.ServeHTTP(w, r)
		}),
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { _ = srv.Serve(ln) }()
	onClose(func() error {
		err := srv.Close()
		inflight.Wait()
		return err
	})
	var join []string
	if !bootstrap {
		for k, o := range c.nodes {
			if k != i {
				join = append(join, o.apiAddr)
			}
		}
	}
	nd.bg.Add(1)
	go func() {
		defer nd.bg.Done()
		if len(join) > 0 {
			if err := meta.JoinVia(ctx, join); err != nil {
				if !errors.Is(err, context.Canceled) {
					log.Error("join", "err", err)
				}
				return
			}
		}
		if meta.WaitLeader(ctx) == nil {
			_ = svc.RecoverUploads(ctx)
		}
	}()
	repair.Start()
	nd.running.Store(true)
}

// testWriter sends log lines to t.Log while the test runs.
type testWriter struct {
	t    testing.TB
	node string
}

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a log line after the test ended
	w.t.Log(string(p))
	return len(p), nil
}
