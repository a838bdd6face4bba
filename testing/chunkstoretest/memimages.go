package chunkstoretest

import (
	"context"
	"sync"

	"github.com/mosaicimg/mosaic/engine"
)

// MemImages is an in-memory engine.ImageStore for tests that need image
// records without Raft (raftmeta.Node is the real one): compare-and-set on
// the revision, copies in and out, like the real one.
type MemImages struct {
	mu sync.Mutex
	m  map[string]*engine.Image
	// BeforeUpdate, when set, runs at the start of every UpdateImage
	// (tests use it to interleave other work with an update).
	BeforeUpdate func(img *engine.Image)
}

var _ engine.ImageStore = (*MemImages)(nil)

// NewMemImages returns an empty store.
func NewMemImages() *MemImages { return &MemImages{m: map[string]*engine.Image{}} }

// Put stores a copy of img as it is, revision included (a record
// replicated from elsewhere).
func (s *MemImages) Put(img *engine.Image) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[img.ID] = img.Clone()
}

// GetImage implements engine.ImageStore.
func (s *MemImages) GetImage(ctx context.Context, id string) (*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	img, ok := s.m[id]
	if !ok {
		return nil, engine.ErrNotFound
	}
	return img.Clone(), nil
}

// ListImages implements engine.ImageStore.
func (s *MemImages) ListImages(ctx context.Context, match func(*engine.Image) bool) ([]*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*engine.Image
	for _, img := range s.m {
		if match == nil || match(img) {
			out = append(out, img.Clone())
		}
	}
	return out, nil
}

// CreateImage implements engine.ImageStore.
func (s *MemImages) CreateImage(ctx context.Context, img *engine.Image) (*engine.Image, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[img.ID]; ok {
		return nil, engine.ErrExists
	}
	img = img.Clone()
	img.Revision = 1
	s.m[img.ID] = img
	return img.Clone(), nil
}

// UpdateImage implements engine.ImageStore.
func (s *MemImages) UpdateImage(ctx context.Context, img *engine.Image, ifRevision uint64) (*engine.Image, error) {
	if f := s.BeforeUpdate; f != nil {
		f(img)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[img.ID]
	if !ok {
		return nil, engine.ErrNotFound
	}
	if cur.Revision != ifRevision {
		return nil, engine.ErrConflict
	}
	img = img.Clone()
	img.Revision = ifRevision + 1
	s.m[img.ID] = img
	return img.Clone(), nil
}

// DeleteImage implements engine.ImageStore.
func (s *MemImages) DeleteImage(ctx context.Context, id string, ifRevision uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[id]
	if !ok {
		return engine.ErrNotFound
	}
	if cur.Revision != ifRevision {
		return engine.ErrConflict
	}
	delete(s.m, id)
	return nil
}
