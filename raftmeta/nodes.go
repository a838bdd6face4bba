package raftmeta

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// The node registry: which nodes belong to the cluster, how to reach them
// (Raft and API addresses) and their role. Raft's own configuration says who
// votes; the registry adds what Raft does not know (the API address that
// forwarding, read-index requests and chunk traffic use) and lets every node
// compute chunk placement from replicated state. Commands 64–79.
const (
	// CmdPutNode adds or replaces a node's registry entry.
	CmdPutNode CommandType = 64
	// CmdRemoveNode deletes a node's registry entry.
	CmdRemoveNode CommandType = 65
)

// NodeInfo is a node's registry entry.
type NodeInfo struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	// Voter is false for non-voters (e.g. hypervisor hosts running
	// `mosaic mount`): they replicate metadata but own no chunks.
	Voter bool `json:"voter"`
	// Since is when the entry was last written (chosen by the proposer).
	Since time.Time `json:"since"`
	// Down is set by the leader when the node has not answered its
	// liveness probes for Config.DownAfter (liveness.go), and cleared
	// when it answers again.
	Down bool `json:"down,omitempty"`
}

// Storage reports whether chunk placement may choose the node: only voters
// own chunks, and not while they are marked down.
func (ni NodeInfo) Storage() bool { return ni.Voter && !ni.Down }

// sameAs reports whether two entries describe the same membership (Since
// aside).
func (ni NodeInfo) sameAs(o NodeInfo) bool {
	return ni.ID == o.ID && ni.RaftAddr == o.RaftAddr && ni.APIAddr == o.APIAddr && ni.Voter == o.Voter
}

type (
	putNodeV1 struct {
		Node NodeInfo `json:"node"`
	}
	removeNodeV1 struct {
		ID string `json:"id"`
	}
)

func applyPutNode(st *state, c putNodeV1) *applyResult {
	if c.Node.ID == "" || c.Node.RaftAddr == "" {
		return &applyResult{Err: fmt.Errorf("put node: %w: no id or raft address", engine.ErrInvalid)}
	}
	n := c.Node
	st.nodes[n.ID] = &n
	return &applyResult{}
}

func applyRemoveNode(st *state, c removeNodeV1) *applyResult {
	delete(st.nodes, c.ID)
	return &applyResult{}
}

// sortedNodes returns copies of the registry's entries in ID order.
func sortedNodes(st *state) []NodeInfo {
	out := make([]NodeInfo, 0, len(st.nodes))
	for _, n := range st.nodes {
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b NodeInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}
