package raftmeta

import (
	"context"
	"slices"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// createdIndex keeps the image records that are not deleted ordered by
// (created_at, id), the order of Glance's default list, so a page of the
// newest images is read without scanning them all (or their tombstones). It holds the current record pointers and is
// changed only by Apply under the FSM's write lock. Creation times only
// grow, so inserts land at (or near) the end.
type createdIndex struct {
	entries []*engine.Image
}

func createdLess(a, b *engine.Image) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

func (x *createdIndex) find(img *engine.Image) (int, bool) {
	return slices.BinarySearchFunc(x.entries, img, createdLess)
}

// put inserts or replaces the record with img's key.
func (x *createdIndex) put(img *engine.Image) {
	i, ok := x.find(img)
	if ok {
		x.entries[i] = img
		return
	}
	x.entries = slices.Insert(x.entries, i, img)
}

func (x *createdIndex) remove(img *engine.Image) {
	if i, ok := x.find(img); ok {
		x.entries = slices.Delete(x.entries, i, i+1)
	}
}

// indexImage records a created or updated image (old is the previous
// record, nil on create).
func (s *state) indexImage(old, img *engine.Image) {
	if old != nil && (createdLess(old, img) != 0 || img.Status == engine.StatusDeleted) {
		s.byCreated.remove(old)
	}
	if img.Status != engine.StatusDeleted {
		s.byCreated.put(img)
	}
}

// unindexImage forgets a removed image.
func (s *state) unindexImage(old *engine.Image) { s.byCreated.remove(old) }

// rebuildIndex builds the index from the image map (after a restore).
func (s *state) rebuildIndex() {
	s.byCreated.entries = s.byCreated.entries[:0]
	for _, img := range s.images {
		if img.Status != engine.StatusDeleted {
			s.byCreated.entries = append(s.byCreated.entries, img)
		}
	}
	slices.SortFunc(s.byCreated.entries, createdLess)
}

var _ engine.ImageOrderedScanner = (*Node)(nil)

// ScanImagesByCreated implements engine.ImageOrderedScanner.
func (n *Node) ScanImagesByCreated(ctx context.Context, desc bool, after *engine.Image, visit func(*engine.Image) bool) error {
	if err := n.readBarrier(ctx); err != nil {
		return err
	}
	n.fsm.read(func(st *state) {
		e := st.byCreated.entries
		if desc {
			i := len(e) - 1
			if after != nil {
				j, _ := slices.BinarySearchFunc(e, after, createdLess)
				i = j - 1 // entries strictly before the marker's key
			}
			for ; i >= 0; i-- {
				if !visit(e[i]) {
					return
				}
			}
			return
		}
		i := 0
		if after != nil {
			j, found := slices.BinarySearchFunc(e, after, createdLess)
			i = j
			if found {
				i++
			}
		}
		for ; i < len(e); i++ {
			if !visit(e[i]) {
				return
			}
		}
	})
	return nil
}
