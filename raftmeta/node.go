package raftmeta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

// Config configures a Node.
type Config struct {
	// NodeID is this node's stable Raft server ID.
	NodeID string
	// Dir holds the log store and snapshots.
	Dir string
	// RaftAddr is the TCP address Raft listens on; AdvertiseAddr, if set,
	// is the address other nodes use to reach it.
	RaftAddr      string
	AdvertiseAddr string
	// APIAddr is the host:port other nodes use to reach this node's HTTP
	// API (internal endpoints: forwarded writes, read index, chunks). It is
	// recorded in the node registry.
	APIAddr string
	// NonVoter makes the node join as a Raft non-voter (it replicates
	// metadata, never votes and owns no chunks).
	NonVoter bool
	// Bootstrap makes a fresh node the single voter of a new cluster.
	Bootstrap bool
	// Secret authenticates node-to-node HTTP requests (the cluster secret).
	Secret string
	// HTTPClient carries node-to-node requests; nil means a client dialing
	// through Network.
	HTTPClient *http.Client
	// Network carries Raft's connections; nil means plain TCP (dialing from
	// RaftAddr's IP when it names one). Tests inject faults through it.
	Network Network
	// ApplyTimeout bounds a proposal (or a linearizable read) when the
	// context has no deadline. Proposals wait out leader elections within it.
	ApplyTimeout time.Duration
	// SnapshotInterval and SnapshotThreshold schedule snapshots (and log
	// truncation); TrailingLogs is how many entries a snapshot leaves.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// LAN timeouts; zero means tuned defaults for a LAN (see DefaultConfig).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	// DownAfter is how long a voter may fail the leader's liveness probes
	// before it is marked down (its chunks then re-replicated elsewhere);
	// 0 disables the probes. ProbeInterval is their period (0: 2 s).
	DownAfter     time.Duration
	ProbeInterval time.Duration
	Logger        *slog.Logger
}

// Network is how Raft listens and dials. The default is TCP.
type Network interface {
	Listen(addr string) (net.Listener, error)
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// DefaultConfig returns timeouts tuned for nodes on one LAN: a follower
// that hears nothing for 1–2 s (randomised) starts an election, so a dead
// leader is replaced in about 1.5 s. Shorter timeouts (500 ms was tried)
// caused spurious elections on an overloaded 2-core machine moving
// gigabytes of chunks.
func DefaultConfig() Config {
	return Config{
		ApplyTimeout:      10 * time.Second,
		HeartbeatTimeout:  time.Second,
		ElectionTimeout:   time.Second,
		SnapshotInterval:  2 * time.Minute,
		SnapshotThreshold: 8192,
		TrailingLogs:      4096,
	}
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.NodeID == "" {
		return errors.New("raftmeta config: empty node ID")
	}
	if c.Dir == "" {
		return errors.New("raftmeta config: empty dir")
	}
	if c.RaftAddr == "" {
		return errors.New("raftmeta config: empty raft address")
	}
	if c.ApplyTimeout == 0 {
		c.ApplyTimeout = d.ApplyTimeout
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = d.HeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = d.ElectionTimeout
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = d.SnapshotInterval
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = d.SnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = d.TrailingLogs
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Network == nil {
		c.Network = TCPNetwork(c.RaftAddr)
	}
	if c.HTTPClient == nil {
		nw := c.Network
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return nw.Dial(ctx, addr) },
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	return nil
}

// TCPNetwork returns the default Network: TCP, dialing from the IP of
// bindAddr when it names one (so a node on 127.0.0.3 talks from
// 127.0.0.3, which lets a test proxy tell nodes apart).
func TCPNetwork(bindAddr string) Network {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 15 * time.Second}
	if host, _, err := net.SplitHostPort(bindAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
	}
	return tcpNetwork{d}
}

type tcpNetwork struct{ d *net.Dialer }

func (t tcpNetwork) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
func (t tcpNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	return t.d.DialContext(ctx, "tcp", addr)
}

// Node is one member of the metadata cluster. It implements
// engine.ImageStore. It is safe for concurrent use.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	fsm       *fsm
	logs      *LogStore
	transport *raft.NetworkTransport
	peers     *peerClient
	log       *slog.Logger

	// leaderGen counts leadership changes seen on notifyCh; readyGen is
	// the generation whose post-election barrier completed, so reads on the
	// leader see every entry committed by earlier leaders.
	leaderGen atomic.Uint64
	readyGen  atomic.Uint64
	notifyCh  chan bool
	stop      chan struct{}
	wg        sync.WaitGroup
}

var _ engine.ImageStore = (*Node)(nil)

// Open starts the node. A fresh node with Bootstrap set forms a new
// single-voter cluster; a node with existing state resumes it; a fresh node
// without Bootstrap waits to be added (see JoinVia).
func Open(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("raftmeta: %w", err)
	}
	hl := newHCLogger(cfg.Logger)
	logs, err := OpenLogStore(filepath.Join(cfg.Dir, "log"), nil)
	if err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, hl)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raftmeta: snapshot store: %w", err)
	}
	ln, err := cfg.Network.Listen(cfg.RaftAddr)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raftmeta: listen %s: %w", cfg.RaftAddr, err)
	}
	var adv net.Addr = ln.Addr()
	if cfg.AdvertiseAddr != "" {
		if adv, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr); err != nil {
			ln.Close()
			logs.Close()
			return nil, fmt.Errorf("raftmeta: advertise address %q: %w", cfg.AdvertiseAddr, err)
		}
	}
	trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: ln, adv: adv, nw: cfg.Network},
		MaxPool: 8, Timeout: 10 * time.Second, Logger: hl,
	})
	n := &Node{
		cfg: cfg, fsm: newFSM(), logs: logs, transport: trans, log: cfg.Logger,
		peers:    &peerClient{hc: cfg.HTTPClient, secret: cfg.Secret},
		notifyCh: make(chan bool, 8), stop: make(chan struct{}),
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = hl
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.HeartbeatTimeout / 2
	rc.CommitTimeout = 5 * time.Millisecond
	rc.SnapshotInterval = cfg.SnapshotInterval
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true
	rc.NotifyCh = n.notifyCh

	existing, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		trans.Close()
		logs.Close()
		return nil, fmt.Errorf("raftmeta: inspect state: %w", err)
	}
	if !existing && cfg.Bootstrap {
		conf := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}}
		if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, conf); err != nil {
			trans.Close()
			logs.Close()
			return nil, fmt.Errorf("raftmeta: bootstrap: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, logs, snaps, trans)
	if err != nil {
		trans.Close()
		logs.Close()
		return nil, fmt.Errorf("raftmeta: start raft: %w", err)
	}
	n.raft = r
	n.wg.Add(1)
	go n.watchLeadership()
	if cfg.DownAfter > 0 {
		if n.cfg.ProbeInterval <= 0 {
			n.cfg.ProbeInterval = 2 * time.Second
		}
		n.wg.Add(1)
		go n.runLiveness()
	}
	return n, nil
}

// streamLayer is raft's StreamLayer over a Network.
type streamLayer struct {
	net.Listener
	adv net.Addr
	nw  Network
}

func (s *streamLayer) Addr() net.Addr { return s.adv }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return s.nw.Dial(ctx, string(addr))
}

// Close stops Raft and closes the stores. It does not leave the cluster:
// a node that closes and opens again resumes its membership.
func (n *Node) Close() error {
	err := n.raft.Shutdown().Error()
	close(n.stop)
	n.wg.Wait()
	n.transport.Close()
	if cerr := n.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

// ID returns this node's ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// Raft exposes the raft instance to cluster tooling and tests.
func (n *Node) Raft() *raft.Raft { return n.raft }

// LogStore exposes the log store (tests check log truncation).
func (n *Node) LogStore() *LogStore { return n.logs }

// watchLeadership runs the post-election barrier: once it completes, the
// new leader's state includes every entry committed before it won, and
// leader reads may be served (read.go). It also keeps the leader's own
// registry entry current.
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case isLeader := <-n.notifyCh:
			gen := n.leaderGen.Add(1)
			if !isLeader {
				continue
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				n.afterElection(gen)
			}()
		}
	}
}

func (n *Node) afterElection(gen uint64) {
	for n.leaderGen.Load() == gen {
		if err := n.raft.Barrier(n.cfg.ApplyTimeout).Error(); err == nil {
			n.readyGen.Store(gen)
			break
		}
		select {
		case <-n.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Keep this node's own registry entry current (a bootstrapped node
	// registers itself here; a node whose address changed re-registers).
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
	defer cancel()
	if n.leaderGen.Load() == gen {
		if err := n.joinLocal(ctx, n.selfInfo()); err != nil && !errors.Is(err, engine.ErrNotLeader) {
			n.log.Warn("register self in node registry", "err", err)
		}
	}
}

// WaitLeader blocks until the cluster has a leader known to this node and
// this node's state includes everything committed before the call (a
// linearizable read barrier).
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		idx, err := n.readIndex(ctx)
		if err == nil {
			return n.fsm.waitApplied(ctx, idx)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftmeta: wait for leader: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, n.cfg.ApplyTimeout)
}

func remaining(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return time.Minute
}

// propose replicates a command and returns its result. On a follower the
// command is forwarded to the leader. While there is no leader (an
// election) it waits, within the context's deadline or ApplyTimeout, and
// retries only when the command was certainly not applied.
func (n *Node) propose(ctx context.Context, t CommandType, body any) (*applyResult, error) {
	b, err := encodeCommand(t, 1, body)
	if err != nil {
		return nil, err
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	for {
		var res *applyResult
		if n.raft.State() == raft.Leader {
			res, err = n.applyLocal(ctx, t, b)
		} else {
			res, err = n.forwardApply(ctx, t, b)
		}
		if err == nil {
			return res, res.Err
		}
		if !errors.Is(err, errRetry) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("raftmeta: %s: %w: no leader accepted the command: %v", t, engine.ErrUnavailable, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wait waits for a raft future within ctx. Some futures (VerifyLeader's on
// a node being shut down) are never answered; a waiter must not hang with
// them. A future abandoned this way leaves one goroutine until it resolves.
func (n *Node) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%w: %v", raft.ErrLeadershipLost, ctx.Err())
	case <-n.stop:
		return raft.ErrRaftShutdown
	}
}

// errRetry marks failures after which the command certainly was not
// applied (no leader, not the leader, connection refused), so it may be
// sent again.
var errRetry = errors.New("not applied; retry")

func (n *Node) applyLocal(ctx context.Context, t CommandType, b []byte) (*applyResult, error) {
	f := n.raft.Apply(b, remaining(ctx))
	if err := n.wait(ctx, f); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrEnqueueTimeout) {
			return nil, fmt.Errorf("raftmeta: %s: %w: %w", t, errRetry, err)
		}
		return nil, translateRaftErr(t.String(), err)
	}
	res, ok := f.Response().(*applyResult)
	if !ok {
		return nil, fmt.Errorf("raftmeta: %s: unexpected response %T", t, f.Response())
	}
	return res, nil
}

// ApplyForwarded applies a command a follower forwarded (the leader side of
// forwarding) and returns the encoded result. It never forwards again: on a
// node that is not the leader it fails with engine.ErrNotLeader, and the
// command was not applied.
func (n *Node) ApplyForwarded(ctx context.Context, cmd []byte) ([]byte, error) {
	if err := checkCommand(cmd); err != nil {
		return nil, err
	}
	t := CommandType(cmd[0])
	if n.raft.State() != raft.Leader {
		return nil, fmt.Errorf("raftmeta: forwarded %s: %w", t, engine.ErrNotLeader)
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	res, err := n.applyLocal(ctx, t, cmd)
	if errors.Is(err, errRetry) {
		return nil, fmt.Errorf("raftmeta: forwarded %s: %w: %v", t, engine.ErrNotLeader, err)
	}
	if err != nil {
		return nil, err
	}
	return encodeResult(res)
}

func translateRaftErr(op string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("raftmeta: %s: %w: %v", op, engine.ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
		// Leadership lost after the entry was sent: it may or may not commit.
		return fmt.Errorf("raftmeta: %s: %w: %v", op, engine.ErrUnavailable, err)
	}
	return fmt.Errorf("raftmeta: %s: %w", op, err)
}

// GetImage implements engine.ImageStore.
func (n *Node) GetImage(ctx context.Context, id string) (*engine.Image, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var img *engine.Image
	n.fsm.read(func(st *state) {
		if v, ok := st.images[id]; ok {
			img = v.Clone()
		}
	})
	if img == nil {
		return nil, fmt.Errorf("raftmeta: image %s: %w", id, engine.ErrNotFound)
	}
	return img, nil
}

// ListImages implements engine.ImageStore. Results are in ID order.
func (n *Node) ListImages(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var out []*engine.Image
	n.fsm.read(func(st *state) {
		for _, img := range st.images {
			if match == nil || match(img) {
				out = append(out, img.Clone())
			}
		}
	})
	slices.SortFunc(out, func(a, b *engine.Image) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// CreateImage implements engine.ImageStore.
func (n *Node) CreateImage(ctx context.Context, img *engine.Image) (*engine.Image, error) {
	res, err := n.propose(ctx, CmdCreateImage, createImageV1{Image: img})
	if err != nil {
		return nil, err
	}
	return res.Image, nil
}

// UpdateImage implements engine.ImageStore.
func (n *Node) UpdateImage(ctx context.Context, img *engine.Image, ifRevision uint64) (*engine.Image, error) {
	res, err := n.propose(ctx, CmdUpdateImage, updateImageV1{Image: img, IfRevision: ifRevision})
	if err != nil {
		return nil, err
	}
	return res.Image, nil
}

// DeleteImage implements engine.ImageStore.
func (n *Node) DeleteImage(ctx context.Context, id string, ifRevision uint64) error {
	_, err := n.propose(ctx, CmdDeleteImage, deleteImageV1{ID: id, IfRevision: ifRevision})
	return err
}

// newHCLogger adapts slog for hashicorp/raft: raft's lines are written to
// the slog logger with component=raft, at warn level and above.
func newHCLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Warn,
		Output: slogWriter{l},
	})
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	switch {
	case strings.Contains(msg, "[ERROR]"):
		level = slog.LevelError
	case strings.Contains(msg, "[WARN]"):
		level = slog.LevelWarn
	}
	w.l.Log(context.Background(), level, msg, "component", "raft")
	return len(p), nil
}

var _ io.Writer = slogWriter{}
