package replication

import (
	"encoding/binary"
	"hash/fnv"
	"slices"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// Member is a node as placement sees it.
type Member struct {
	ID string
	// Addr is the node's API address (host:port) for internal requests.
	Addr string
	// Storage is true for storage voters, the only nodes that own chunks.
	Storage bool
}

// Membership lists the cluster's nodes (the consumer's view of the Raft
// node registry; cmd adapts raftmeta to it).
type Membership interface {
	Members() []Member
}

// MembersFunc adapts a function to Membership.
type MembersFunc func() []Member

// Members implements Membership.
func (f MembersFunc) Members() []Member { return f() }

// score is the rendezvous weight of (node, chunk). ChunkIDs are BLAKE3
// digests, so their first 8 bytes are already uniform; mixing them with a
// hash of the node ID through a 64-bit finaliser (splitmix64) gives each
// node an independent, uniform score.
func score(nodeHash uint64, id engine.ChunkID) uint64 {
	x := binary.LittleEndian.Uint64(id[:8]) ^ nodeHash
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func nodeHash(id string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(id))
	return h.Sum64()
}

// Ranking is a precomputed view of the storage members, for ranking many
// chunks against one membership.
type Ranking struct {
	members []Member
	hashes  []uint64
}

// NewRanking returns the ranking over the storage members of ms.
func NewRanking(ms []Member) *Ranking {
	r := &Ranking{}
	for _, m := range ms {
		if m.Storage {
			r.members = append(r.members, m)
		}
	}
	slices.SortFunc(r.members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	for _, m := range r.members {
		r.hashes = append(r.hashes, nodeHash(m.ID))
	}
	return r
}

// Len returns the number of storage members.
func (r *Ranking) Len() int { return len(r.members) }

// Rank returns every storage member, best first, for id.
func (r *Ranking) Rank(id engine.ChunkID) []Member {
	type scored struct {
		s uint64
		i int
	}
	sc := make([]scored, len(r.members))
	for i, h := range r.hashes {
		sc[i] = scored{score(h, id), i}
	}
	slices.SortFunc(sc, func(a, b scored) int {
		switch {
		case a.s > b.s:
			return -1
		case a.s < b.s:
			return 1
		}
		return strings.Compare(r.members[a.i].ID, r.members[b.i].ID)
	})
	out := make([]Member, len(sc))
	for k, s := range sc {
		out[k] = r.members[s.i]
	}
	return out
}

// Owners returns the first min(replicas, storage members) of Rank(id).
func (r *Ranking) Owners(id engine.ChunkID, replicas int) []Member {
	rk := r.Rank(id)
	return rk[:min(replicas, len(rk))]
}

// Owns reports whether node is among id's owners.
func (r *Ranking) Owns(id engine.ChunkID, replicas int, node string) bool {
	return slices.ContainsFunc(r.Owners(id, replicas), func(m Member) bool { return m.ID == node })
}

// signature identifies a storage membership, to notice changes.
func (r *Ranking) signature() string {
	var b strings.Builder
	for _, m := range r.members {
		b.WriteString(m.ID)
		b.WriteByte('@')
		b.WriteString(m.Addr)
		b.WriteByte(';')
	}
	return b.String()
}
