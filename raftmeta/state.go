package raftmeta

import (
	"maps"

	"github.com/mosaicimg/mosaic/engine"
)

// state is the replicated metadata. Stored values are never mutated in
// place: Apply replaces them, so a snapshot can share them.
type state struct {
	images  map[string]*engine.Image
	secrets map[string]*engine.Secret
	// members: image ID → member ID → membership (inner maps are replaced, never changed).
	members map[string]map[string]*engine.Member
	tasks   map[string]*engine.Task
	// byCreated orders the images for lists; not part of snapshots.
	byCreated createdIndex
	nodes     map[string]*NodeInfo
	// leases: host → its in-use lease (leases.go).
	leases map[string]*HostLeases
	// applied is the index of the last log entry this state reflects.
	applied uint64
}

func newState() *state {
	return &state{images: map[string]*engine.Image{}, secrets: map[string]*engine.Secret{},
		members: map[string]map[string]*engine.Member{}, tasks: map[string]*engine.Task{},
		nodes: map[string]*NodeInfo{}, leases: map[string]*HostLeases{}}
}

// view returns a copy of the maps sharing the (immutable) values.
func (s *state) view() *state {
	return &state{images: maps.Clone(s.images), secrets: maps.Clone(s.secrets),
		members: maps.Clone(s.members), tasks: maps.Clone(s.tasks),
		nodes: maps.Clone(s.nodes), leases: maps.Clone(s.leases), applied: s.applied}
}
