package raftmeta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

// Membership. Join and Remove run on the leader; on any other node they
// are forwarded to it (like writes). Join is idempotent (after rqlite): the
// same ID and address is a no-op; an ID whose address changed (or an
// address now claimed by another ID) is removed first and added again.

// selfInfo is this node's registry entry as it should be.
func (n *Node) selfInfo() NodeInfo {
	return NodeInfo{ID: n.cfg.NodeID, RaftAddr: string(n.transport.LocalAddr()), APIAddr: n.cfg.APIAddr, Voter: !n.cfg.NonVoter}
}

// Self returns this node's registry entry as it should be.
func (n *Node) Self() NodeInfo { return n.selfInfo() }

// Join adds (or updates) a node in the Raft configuration and the node
// registry. It is idempotent.
func (n *Node) Join(ctx context.Context, ni NodeInfo) error {
	if ni.ID == "" || ni.RaftAddr == "" {
		return fmt.Errorf("raftmeta: join: %w: node ID and raft address are required", engine.ErrInvalid)
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	body, err := json.Marshal(ni)
	if err != nil {
		return err
	}
	return n.onLeader(ctx, "join", func() error { return n.joinLocal(ctx, ni) },
		func(addr string) error {
			_, err := n.peers.do(ctx, http.MethodPost, addr, pathJoin, body)
			return err
		})
}

// onLeader runs local on the leader, or remote with the leader's API
// address, retrying while there is no leader.
func (n *Node) onLeader(ctx context.Context, op string, local func() error, remote func(addr string) error) error {
	for {
		var err error
		if n.raft.State() == raft.Leader {
			err = local()
			if errors.Is(err, engine.ErrNotLeader) {
				err = fmt.Errorf("%w: %v", errRetry, err)
			}
		} else {
			var addr string
			if addr, err = n.leaderAPI(); err == nil {
				err = remote(addr)
			}
		}
		// Join and remove are idempotent: unavailability is retried too.
		if err == nil || !(errors.Is(err, errRetry) || errors.Is(err, engine.ErrUnavailable)) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftmeta: %s: %w: %v", op, engine.ErrUnavailable, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (n *Node) joinLocal(ctx context.Context, ni NodeInfo) error {
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("raftmeta: join %s: %w", ni.ID, engine.ErrNotLeader)
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return translateRaftErr("join: configuration", err)
	}
	timeout := remaining(ctx)
	member := false
	for _, srv := range cf.Configuration().Servers {
		sameID, sameAddr := string(srv.ID) == ni.ID, string(srv.Address) == ni.RaftAddr
		if !sameID && !sameAddr {
			continue
		}
		if sameID && sameAddr {
			member = true
			isVoter := srv.Suffrage == raft.Voter
			switch {
			case ni.Voter && !isVoter:
				if err := n.raft.AddVoter(srv.ID, srv.Address, 0, timeout).Error(); err != nil {
					return translateRaftErr("join: promote "+ni.ID, err)
				}
			case !ni.Voter && isVoter:
				if err := n.raft.DemoteVoter(srv.ID, 0, timeout).Error(); err != nil {
					return translateRaftErr("join: demote "+ni.ID, err)
				}
			}
			continue
		}
		if string(srv.ID) == n.cfg.NodeID {
			return fmt.Errorf("raftmeta: join %s: %w: address %s belongs to the leader", ni.ID, engine.ErrConflict, ni.RaftAddr)
		}
		n.log.Info("join: replacing stale server", "id", srv.ID, "address", srv.Address, "new_id", ni.ID, "new_address", ni.RaftAddr)
		if err := n.raft.RemoveServer(srv.ID, 0, timeout).Error(); err != nil {
			return translateRaftErr("join: remove stale "+string(srv.ID), err)
		}
		if !sameID {
			if _, err := n.propose(ctx, CmdRemoveNode, removeNodeV1{ID: string(srv.ID)}); err != nil {
				return err
			}
		}
	}
	if !member {
		var f raft.IndexFuture
		if ni.Voter {
			f = n.raft.AddVoter(raft.ServerID(ni.ID), raft.ServerAddress(ni.RaftAddr), 0, timeout)
		} else {
			f = n.raft.AddNonvoter(raft.ServerID(ni.ID), raft.ServerAddress(ni.RaftAddr), 0, timeout)
		}
		if err := f.Error(); err != nil {
			return translateRaftErr("join: add "+ni.ID, err)
		}
		n.log.Info("node joined", "id", ni.ID, "raft", ni.RaftAddr, "api", ni.APIAddr, "voter", ni.Voter)
	}
	var cur *NodeInfo
	n.fsm.read(func(st *state) {
		if v, ok := st.nodes[ni.ID]; ok {
			c := *v
			cur = &c
		}
	})
	if cur != nil && cur.sameAs(ni) {
		return nil
	}
	ni.Since = time.Now().UTC()
	_, err := n.propose(ctx, CmdPutNode, putNodeV1{Node: ni})
	return err
}

// JoinVia asks the nodes at the given API addresses, in turn, to add this
// node, until one succeeds (they forward to the leader). It is how a node
// started with --join enters the cluster, and re-enters it after a restart
// or an address change; it is idempotent.
func (n *Node) JoinVia(ctx context.Context, apiAddrs []string) error {
	body, err := json.Marshal(n.selfInfo())
	if err != nil {
		return err
	}
	var last error
	for {
		for _, a := range apiAddrs {
			if a == n.cfg.APIAddr {
				continue
			}
			if _, err := n.peers.do(ctx, http.MethodPost, a, pathJoin, body); err != nil {
				last = err
				continue
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftmeta: join via %v: %w (last error: %v)", apiAddrs, ctx.Err(), last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Remove takes a node out of the Raft configuration and the registry.
// Removing a node that is not a member is a no-op.
func (n *Node) Remove(ctx context.Context, id string) error {
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"id": id})
	return n.onLeader(ctx, "remove", func() error { return n.removeLocal(ctx, id) },
		func(addr string) error {
			_, err := n.peers.do(ctx, http.MethodPost, addr, pathRemove, body)
			return err
		})
}

func (n *Node) removeLocal(ctx context.Context, id string) error {
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("raftmeta: remove %s: %w", id, engine.ErrNotLeader)
	}
	// The registry entry goes first: while the leader can still commit, so
	// placement stops choosing the node before Raft forgets it.
	var registered bool
	n.fsm.read(func(st *state) { _, registered = st.nodes[id] })
	if registered {
		if _, err := n.propose(ctx, CmdRemoveNode, removeNodeV1{ID: id}); err != nil {
			return err
		}
	}
	cf := n.raft.GetConfiguration()
	if err := cf.Error(); err != nil {
		return translateRaftErr("remove: configuration", err)
	}
	for _, srv := range cf.Configuration().Servers {
		if string(srv.ID) == id {
			if err := n.raft.RemoveServer(srv.ID, 0, remaining(ctx)).Error(); err != nil {
				return translateRaftErr("remove "+id, err)
			}
			n.log.Info("node removed", "id", id)
		}
	}
	return nil
}

// Leave removes this node from the cluster. A leader first hands
// leadership to another voter, so the cluster keeps a leader.
func (n *Node) Leave(ctx context.Context) error {
	if n.raft.State() == raft.Leader {
		if err := n.raft.LeadershipTransfer().Error(); err != nil {
			n.log.Warn("leave: leadership transfer", "err", err)
		}
	}
	return n.Remove(ctx, n.cfg.NodeID)
}

// Nodes returns the node registry (local state, in ID order).
func (n *Node) Nodes() []NodeInfo {
	var out []NodeInfo
	n.fsm.read(func(st *state) { out = sortedNodes(st) })
	return out
}

// ServerStatus is one server of the Raft configuration.
type ServerStatus struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	Suffrage string `json:"suffrage"`
}

// Status is this node's view of the metadata cluster.
type Status struct {
	ID                string         `json:"id"`
	State             string         `json:"state"`
	LeaderID          string         `json:"leader_id"`
	LeaderAddr        string         `json:"leader_addr"`
	Term              uint64         `json:"term"`
	CommitIndex       uint64         `json:"commit_index"`
	AppliedIndex      uint64         `json:"applied_index"`
	LastLogIndex      uint64         `json:"last_log_index"`
	FirstLogIndex     uint64         `json:"first_log_index"`
	LastSnapshotIndex uint64         `json:"last_snapshot_index"`
	Servers           []ServerStatus `json:"servers"`
	Nodes             []NodeInfo     `json:"nodes"`
}

// Status reports this node's view (no leader round trip).
func (n *Node) Status() Status {
	addr, id := n.raft.LeaderWithID()
	first, _ := n.logs.FirstIndex()
	snap, _ := strconv.ParseUint(n.raft.Stats()["last_snapshot_index"], 10, 64)
	s := Status{
		ID: n.cfg.NodeID, State: n.raft.State().String(), LeaderID: string(id), LeaderAddr: string(addr),
		Term: n.raft.CurrentTerm(), CommitIndex: n.raft.CommitIndex(), AppliedIndex: n.fsm.applied(),
		LastLogIndex: n.raft.LastIndex(), FirstLogIndex: first, LastSnapshotIndex: snap, Nodes: n.Nodes(),
	}
	if cf := n.raft.GetConfiguration(); cf.Error() == nil {
		for _, srv := range cf.Configuration().Servers {
			s.Servers = append(s.Servers, ServerStatus{ID: string(srv.ID), Address: string(srv.Address), Suffrage: srv.Suffrage.String()})
		}
	}
	return s
}

// Snapshot takes a snapshot now (and truncates the log behind it).
func (n *Node) Snapshot() error {
	if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("raftmeta: snapshot: %w", err)
	}
	return nil
}

// JoinNode is Join with plain arguments (what the internal API passes).
func (n *Node) JoinNode(ctx context.Context, id, raftAddr, apiAddr string, voter bool) error {
	return n.Join(ctx, NodeInfo{ID: id, RaftAddr: raftAddr, APIAddr: apiAddr, Voter: voter})
}
