package raftmeta

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

// Liveness. The leader probes every voter's API (GET /internal/ping with
// the cluster secret) every ProbeInterval. A voter that has not answered
// for DownAfter is marked down in the node registry: it stays a Raft voter
// (it may come back) but chunk placement stops choosing it, so the
// repairers restore R copies of its chunks on the others — what Ceph does
// when it marks an OSD out after mon_osd_down_out_interval. Its first
// answer marks it up again, and the repairers move its share back. The
// mark is a registry write like any other (CmdPutNode), so every node sees
// the same storage membership.

// PathPing is the liveness probe's internal endpoint.
const PathPing = "/internal/ping"

func (n *Node) runLiveness() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.ProbeInterval)
	defer t.Stop()
	lastOK := map[string]time.Time{}
	var gen uint64
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		g := n.leaderGen.Load()
		if n.raft.State() != raft.Leader || n.readyGen.Load() != g {
			continue
		}
		if g != gen {
			// A new term of leadership: nobody has been silent for
			// long as far as this leader knows.
			gen, lastOK = g, map[string]time.Time{}
		}
		now := time.Now()
		for _, ni := range n.Nodes() {
			if ni.ID == n.cfg.NodeID || !ni.Voter {
				continue
			}
			if _, seen := lastOK[ni.ID]; !seen {
				lastOK[ni.ID] = now
			}
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ProbeInterval)
			_, err := n.peers.do(ctx, http.MethodGet, ni.APIAddr, PathPing, nil)
			cancel()
			switch {
			case err == nil:
				lastOK[ni.ID] = now
				if ni.Down {
					n.setDown(ni, false)
				}
			case !ni.Down && now.Sub(lastOK[ni.ID]) >= n.cfg.DownAfter:
				n.log.Warn("node unreachable: marking it down; its chunks are re-replicated on the others",
					"node", ni.ID, "silent", now.Sub(lastOK[ni.ID]).Round(time.Second), "err", err)
				n.setDown(ni, true)
			}
		}
	}
}

// setDown writes ni back with the down mark set or cleared.
func (n *Node) setDown(ni NodeInfo, down bool) {
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
	defer cancel()
	ni.Down = down
	ni.Since = time.Now().UTC()
	if _, err := n.propose(ctx, CmdPutNode, putNodeV1{Node: ni}); err != nil && !errors.Is(err, engine.ErrNotLeader) {
		n.log.Warn("mark node", "node", ni.ID, "down", down, "err", err)
		return
	}
	if !down {
		n.log.Info("node answers again: marked up", "node", ni.ID)
	}
}
