package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mosaicimg/mosaic/api"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/raftmeta"
	"github.com/mosaicimg/mosaic/replication"
)

// clusterFlags are serve's cluster settings.
type clusterFlags struct {
	join          string
	nonVoter      bool
	secret        string
	secretFile    string
	advertiseAPI  string
	advertiseRaft string
	replicas      int
	claimTTL      time.Duration
	downAfter     time.Duration
}

func (f *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.join, "join", "", "join the cluster through these nodes' API addresses (comma-separated host:port); keep it on restarts")
	fs.BoolVar(&f.nonVoter, "nonvoter", false, "join as a Raft non-voter that owns no chunks")
	fs.StringVar(&f.secret, "cluster-secret", "", "secret shared by the cluster's nodes for node-to-node requests (prefer MOSAIC_CLUSTER_SECRET or --cluster-secret-file)")
	fs.StringVar(&f.secretFile, "cluster-secret-file", "", "read the cluster secret from this file")
	fs.StringVar(&f.advertiseAPI, "advertise-api", "", "API address other nodes use to reach this one (default: --api-addr)")
	fs.StringVar(&f.advertiseRaft, "advertise-raft", "", "Raft address other nodes use to reach this one (default: --raft-addr)")
	fs.IntVar(&f.replicas, "replicas", 3, "copies of every chunk across storage nodes (fewer in a smaller cluster)")
	fs.DurationVar(&f.downAfter, "down-after", 5*time.Minute, "mark a storage node down after it fails the leader's liveness probes this long, so its chunks are re-replicated on the others (0: never)")
	fs.DurationVar(&f.claimTTL, "claim-ttl", 10*time.Minute, "how long another node's claim on chunks stored here protects them from GC (claims are renewed while the claiming upload runs)")
}

// resolve reads the secret file and fills defaults.
func (f *clusterFlags) resolve(apiAddr, raftAddr string) error {
	if f.secretFile != "" {
		b, err := os.ReadFile(f.secretFile)
		if err != nil {
			return fmt.Errorf("cluster secret file: %w", err)
		}
		f.secret = strings.TrimSpace(string(b))
	}
	if f.advertiseAPI == "" {
		f.advertiseAPI = apiAddr
	}
	if (f.join != "" || f.nonVoter) && f.secret == "" {
		return errors.New("a cluster secret is required to join a cluster (--cluster-secret-file, MOSAIC_CLUSTER_SECRET or --cluster-secret)")
	}
	if f.secret != "" && len(f.secret) < 16 {
		return errors.New("the cluster secret must be at least 16 characters")
	}
	if f.replicas < 1 {
		return fmt.Errorf("--replicas %d: must be at least 1", f.replicas)
	}
	if f.claimTTL < 3*time.Second {
		return fmt.Errorf("--claim-ttl %s: must be at least 3s", f.claimTTL)
	}
	return nil
}

func (f *clusterFlags) joinAddrs() []string {
	var out []string
	for _, a := range strings.Split(f.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// clusterParts is the metadata node, the replicating chunk store and what
// the HTTP server and the background jobs need from them.
type clusterParts struct {
	c      serveConfig
	meta   *raftmeta.Node
	store  *replication.Store
	repair *replication.Repairer
	svc    *engine.Service
	keys   *engine.KeyManager
	// pins are shared by uploads, the peer's leases and GC.
	pins     *engine.Pins
	internal http.Handler
	log      *slog.Logger
}

// nodeHTTPClient dials other nodes from the API address's IP.
func nodeHTTPClient(apiAddr string) *http.Client {
	nw := raftmeta.TCPNetwork(apiAddr)
	return &http.Client{Transport: &http.Transport{
		DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return nw.Dial(ctx, addr) },
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func startCluster(ctx context.Context, n *node, c serveConfig, chunks *pebblestore.Store, log *slog.Logger) (*clusterParts, error) {
	hc := nodeHTTPClient(c.apiAddr)
	meta, err := raftmeta.Open(raftmeta.Config{
		NodeID: c.nodeID, Dir: filepath.Join(c.dataDir, "raft"), RaftAddr: c.raftAddr,
		AdvertiseAddr: c.cluster.advertiseRaft, APIAddr: c.cluster.advertiseAPI,
		Bootstrap: c.cluster.join == "", NonVoter: c.cluster.nonVoter, DownAfter: c.cluster.downAfter,
		Secret: c.cluster.secret, HTTPClient: hc, Logger: log,
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
	pins := engine.NewPins()
	rcfg := replication.Config{SelfID: c.nodeID, Replicas: c.cluster.replicas, Secret: c.cluster.secret, HTTPClient: hc, Logger: log,
		ClaimTTL: c.cluster.claimTTL, LocalPins: pins}
	store, err := replication.NewStore(rcfg, chunks, members)
	if err != nil {
		return nil, err
	}
	n.onClose(store.Close)
	keys := engine.NewKeyManager(meta, engine.KeyManagerConfig{})
	// The local store remembers the digests of what this node ingested,
	// so an upload of known content through it skips hashing.
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: c.nodeID, ChunkCacheBytes: c.cacheBytes,
		Certificates: keys, Import: c.importConfig(), Ingest: engine.IngestConfig{Memo: chunks, Logger: log}},
		meta, store, pins, log)
	if err != nil {
		return nil, err
	}
	peer := replication.NewPeer(rcfg, chunks, pins)
	n.onClose(peer.Close)
	repair := replication.NewRepairer(store, replication.LiveFunc(func(ctx context.Context) ([]engine.ChunkID, error) {
		imgs, err := meta.ListImages(ctx, func(img *engine.Image) bool {
			return img.HasData() && img.Status != engine.StatusDeleted
		})
		if err != nil {
			return nil, err
		}
		roots := make([]engine.ChunkID, len(imgs))
		for i, img := range imgs {
			roots[i] = img.ManifestRoot
		}
		return roots, nil
	}))
	n.onClose(repair.Close)
	reporter := replication.NewReporter(store, repair, func() any { return meta.Status() })
	internal := api.NewInternal(api.InternalOptions{
		Secret: c.cluster.secret, Meta: meta, Chunks: peer, Reporter: reporter, Logger: log,
	})
	return &clusterParts{c: c, meta: meta, store: store, repair: repair, svc: svc, keys: keys, pins: pins, internal: internal, log: log}, nil
}

// afterListen runs once the API serves: join (or rejoin) through --join;
// once a leader is known, reset this node's interrupted uploads; start the
// repairer. It does not block: a node restarting with its peers down waits
// for them in the background, and a restarted member whose --join targets
// are gone still resumes through Raft.
func (cl *clusterParts) afterListen(ctx context.Context) {
	if addrs := cl.c.cluster.joinAddrs(); len(addrs) > 0 {
		go func() {
			if err := cl.meta.JoinVia(ctx, addrs); err != nil {
				cl.log.Error("join the cluster", "via", addrs, "err", err)
				return
			}
			cl.log.Info("joined the cluster", "via", addrs)
		}()
	}
	go func() {
		if err := cl.meta.WaitLeader(ctx); err != nil {
			cl.log.Error("wait for a leader", "err", err)
			return
		}
		if err := cl.svc.RecoverUploads(ctx); err != nil {
			cl.log.Error("recover interrupted uploads", "err", err)
		}
		if err := cl.svc.RecoverImports(ctx); err != nil {
			cl.log.Error("recover interrupted imports", "err", err)
		}
	}()
	cl.repair.Start()
}
