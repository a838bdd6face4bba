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
}

func newState() *state {
	return &state{images: map[string]*engine.Image{}, secrets: map[string]*engine.Secret{}}
}

// view returns a copy of the maps sharing the (immutable) values.
func (s *state) view() *state {
	return &state{images: maps.Clone(s.images), secrets: maps.Clone(s.secrets)}
}
