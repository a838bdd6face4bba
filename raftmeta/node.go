package raftmeta

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	// Bootstrap makes a fresh node the single voter of a new cluster.
	Bootstrap bool
	// ApplyTimeout bounds a proposal when the context has no deadline.
	ApplyTimeout time.Duration
	// SnapshotInterval and SnapshotThreshold schedule snapshots (and log
	// truncation); zero means raft's defaults.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	// LAN timeouts; zero means tuned defaults for a LAN (see DefaultConfig).
	HeartbeatTimeout time.Duration
	ElectionTimeout  time.Duration
	Logger           *slog.Logger
}

// DefaultConfig returns timeouts tuned for nodes on one LAN.
func DefaultConfig() Config {
	return Config{
		ApplyTimeout:      10 * time.Second,
		HeartbeatTimeout:  500 * time.Millisecond,
		ElectionTimeout:   500 * time.Millisecond,
		SnapshotInterval:  2 * time.Minute,
		SnapshotThreshold: 8192,
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
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Node is one member of the metadata cluster. It implements
// engine.ImageStore.
type Node struct {
	cfg       Config
	raft      *raft.Raft
	fsm       *fsm
	logs      *LogStore
	transport *raft.NetworkTransport
	log       *slog.Logger
}

var _ engine.ImageStore = (*Node)(nil)

// Open starts the node. A fresh node with Bootstrap set forms a new
// single-voter cluster; a node with existing state resumes it.
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
	adv := cfg.AdvertiseAddr
	if adv == "" {
		adv = cfg.RaftAddr
	}
	advAddr, err := net.ResolveTCPAddr("tcp", adv)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raftmeta: advertise address %q: %w", adv, err)
	}
	trans, err := raft.NewTCPTransportWithLogger(cfg.RaftAddr, advAddr, 8, 10*time.Second, hl)
	if err != nil {
		logs.Close()
		return nil, fmt.Errorf("raftmeta: listen %s: %w", cfg.RaftAddr, err)
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
	rc.TrailingLogs = 4096
	rc.MaxAppendEntries = 256
	rc.BatchApplyCh = true

	f := newFSM()
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
	r, err := raft.NewRaft(rc, f, logs, logs, snaps, trans)
	if err != nil {
		trans.Close()
		logs.Close()
		return nil, fmt.Errorf("raftmeta: start raft: %w", err)
	}
	return &Node{cfg: cfg, raft: r, fsm: f, logs: logs, transport: trans, log: cfg.Logger}, nil
}

// Close stops Raft and closes the stores.
func (n *Node) Close() error {
	err := n.raft.Shutdown().Error()
	n.transport.Close()
	if cerr := n.logs.Close(); err == nil {
		err = cerr
	}
	return err
}

// Raft exposes the raft instance to cluster tooling in this package's callers.
func (n *Node) Raft() *raft.Raft { return n.raft }

// WaitLeader blocks until the cluster has a leader known to this node and
// this node has applied the log up to its own last index at that moment.
func (n *Node) WaitLeader(ctx context.Context) error {
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			if n.raft.State() != raft.Leader || n.raft.Barrier(time.Second).Error() == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftmeta: wait for leader: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (n *Node) timeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		if t := time.Until(d); t > 0 {
			return t
		}
		return time.Millisecond
	}
	return n.cfg.ApplyTimeout
}

// propose replicates a command and returns its result.
func (n *Node) propose(ctx context.Context, t CommandType, body any) (*applyResult, error) {
	b, err := encodeCommand(t, 1, body)
	if err != nil {
		return nil, err
	}
	f := n.raft.Apply(b, n.timeout(ctx))
	if err := f.Error(); err != nil {
		return nil, translateRaftErr(t.String(), err)
	}
	res, ok := f.Response().(*applyResult)
	if !ok {
		return nil, fmt.Errorf("raftmeta: %s: unexpected response %T", t, f.Response())
	}
	return res, res.Err
}

func translateRaftErr(op string, err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return fmt.Errorf("raftmeta: %s: %w: %v", op, engine.ErrNotLeader, err)
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("raftmeta: %s: %w: %v", op, engine.ErrUnavailable, err)
	}
	return fmt.Errorf("raftmeta: %s: %w", op, err)
}

// readBarrier makes the following local read linearizable: the leader
// confirms it is still leader (a heartbeat round) before serving.
func (n *Node) readBarrier(ctx context.Context) error {
	if engine.IsLocalRead(ctx) {
		return nil
	}
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("raftmeta: read: %w", engine.ErrNotLeader)
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return translateRaftErr("read", err)
	}
	return nil
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
