package raftmeta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

// Linearizable reads use the read-index protocol (Raft thesis §6.4):
//
//  1. The leader learns a read index: its commit index, taken only after
//     the barrier that follows its election has applied (so the index
//     covers everything earlier leaders committed), and confirmed by a
//     heartbeat round (VerifyLeader) so a deposed leader cannot answer.
//  2. A follower asks the leader for that index over the internal API.
//  3. The reading node waits until its own state has applied the index,
//     then reads locally.
//
// A write acknowledged anywhere before the read started is therefore
// visible on every node. engine.LocalRead skips all of it.

// readBarrier makes the following local read linearizable.
func (n *Node) readBarrier(ctx context.Context) error {
	if engine.IsLocalRead(ctx) {
		return nil
	}
	ctx, cancel := n.withTimeout(ctx)
	defer cancel()
	for {
		idx, err := n.readIndex(ctx)
		if err == nil {
			if err := n.fsm.waitApplied(ctx, idx); err != nil {
				return fmt.Errorf("raftmeta: read: wait for index %d: %w: %v", idx, engine.ErrUnavailable, err)
			}
			return nil
		}
		// Reads are idempotent: any failure (no leader, a leader that just
		// died, a dropped connection) is retried until the deadline.
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftmeta: read: %w: no leader confirmed the read: %v", engine.ErrUnavailable, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readIndex returns the index a linearizable read must wait for, asking
// the leader when this node is not it. Failures that a retry may cure wrap
// errRetry.
func (n *Node) readIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() == raft.Leader {
		idx, err := n.ReadIndex(ctx)
		if errors.Is(err, engine.ErrNotLeader) {
			return 0, fmt.Errorf("%w: %v", errRetry, err)
		}
		return idx, err
	}
	return n.forwardReadIndex(ctx)
}

// ReadIndex is the leader's side of a linearizable read: it returns the
// commit index once leadership is confirmed. It fails with
// engine.ErrNotLeader on any other node.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	for {
		if n.raft.State() != raft.Leader {
			return 0, fmt.Errorf("raftmeta: read index: %w", engine.ErrNotLeader)
		}
		if gen := n.leaderGen.Load(); gen != 0 && n.readyGen.Load() == gen {
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("raftmeta: read index: %w: new leader not ready: %v", engine.ErrUnavailable, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	idx := n.raft.CommitIndex()
	if err := n.wait(ctx, n.raft.VerifyLeader()); err != nil {
		return 0, fmt.Errorf("raftmeta: read index: %w: %v", engine.ErrNotLeader, err)
	}
	return n.fsmIndex(idx), nil
}

// fsmIndex returns the index of the last entry at or below idx that the
// FSM sees. No-op and barrier entries (a new leader's first entries) never
// reach the FSM, so waiting for their index would wait for the next write;
// what a read must wait for is the last command before them.
func (n *Node) fsmIndex(idx uint64) uint64 {
	applied := n.fsm.applied()
	var l raft.Log
	for ; idx > applied; idx-- {
		if err := n.logs.GetLog(idx, &l); err != nil {
			return applied // compacted into a snapshot the FSM already holds
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return idx
		}
	}
	return idx
}

// AppliedIndex returns the index of the last entry this node applied.
func (n *Node) AppliedIndex() uint64 { return n.fsm.applied() }
