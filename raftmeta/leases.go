package raftmeta

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// In-use leases (range 80–95). A host with image files open on its mount
// (a `mosaic mount` host, or a storage node's own mount) keeps a lease on
// their manifest roots; every storage node's garbage collector adds the
// roots of unexpired leases to its marks, so an image deleted while VMs
// run from it keeps its chunks until the last host lets its lease go or
// stops renewing it.
const (
	CmdPutLeases CommandType = 80
)

// HostLeases is one host's in-use lease: the manifest roots it has open,
// until Expires (the proposer's clock).
type HostLeases struct {
	Host    string           `json:"host"`
	Roots   []engine.ChunkID `json:"roots"`
	Expires time.Time        `json:"expires"`
}

// putLeasesV1 replaces a host's leases (no roots: removes them) and drops
// every lease that expired before Now (the proposer's time, so every node
// applies the same thing).
type putLeasesV1 struct {
	Leases HostLeases `json:"leases"`
	Now    time.Time  `json:"now"`
}

func applyPutLeases(st *state, version byte, body []byte) *applyResult {
	var c putLeasesV1
	mustDecode(CmdPutLeases, version, 1, body, &c)
	if c.Leases.Host == "" {
		return &applyResult{Err: fmt.Errorf("put leases: %w: no host", engine.ErrInvalid)}
	}
	for h, l := range st.leases {
		if l.Expires.Before(c.Now) {
			delete(st.leases, h)
		}
	}
	if len(c.Leases.Roots) == 0 {
		delete(st.leases, c.Leases.Host)
	} else {
		l := c.Leases
		st.leases[l.Host] = &l
	}
	return &applyResult{}
}

// PutLeases replaces host's in-use leases with roots, valid for ttl from
// now; no roots releases them.
func (n *Node) PutLeases(ctx context.Context, host string, roots []engine.ChunkID, ttl time.Duration) error {
	now := time.Now()
	_, err := n.propose(ctx, CmdPutLeases, putLeasesV1{
		Leases: HostLeases{Host: host, Roots: roots, Expires: now.Add(ttl)}, Now: now,
	})
	return err
}

// Leases returns the unexpired leases, linearizably (unless ctx asks for a
// local read).
func (n *Node) Leases(ctx context.Context) ([]HostLeases, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	var out []HostLeases
	n.fsm.read(func(st *state) {
		for _, h := range slices.Sorted(maps.Keys(st.leases)) {
			if l := st.leases[h]; l.Expires.After(now) {
				out = append(out, *l)
			}
		}
	})
	return out, nil
}

// LeaseRoots returns the leases as a garbage collector's extra roots.
func (n *Node) LeaseRoots() engine.RootSource { return leaseRoots{n} }

type leaseRoots struct{ n *Node }

// LiveRoots implements engine.RootSource.
func (l leaseRoots) LiveRoots(ctx context.Context) ([]engine.ChunkID, error) {
	ls, err := l.n.Leases(ctx)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: in-use leases: %w", err)
	}
	var out []engine.ChunkID
	for _, h := range ls {
		out = append(out, h.Roots...)
	}
	return out, nil
}

// writeLeaseRecords writes one "lease" record per host, in host order.
func writeLeaseRecords(enc *json.Encoder, st *state) (int, error) {
	n := 0
	for _, h := range slices.Sorted(maps.Keys(st.leases)) {
		v, err := json.Marshal(st.leases[h])
		if err != nil {
			return n, err
		}
		if err := enc.Encode(snapshotRecord{T: "lease", V: v}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

func restoreLeaseRecord(st *state, v json.RawMessage) error {
	var l HostLeases
	if err := json.Unmarshal(v, &l); err != nil {
		return fmt.Errorf("raftmeta: restore lease: %w", err)
	}
	st.leases[l.Host] = &l
	return nil
}
