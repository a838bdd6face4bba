package fusefs

import (
	"context"
	"sync"

	"github.com/mosaicimg/mosaic/engine"
)

// OpenImages counts the open files of each image content (manifest root)
// in a tree. It is an engine.RootSource: handed to the node's garbage
// collector, it keeps the chunks of an image that was deleted while a VM
// still has it open until the last handle is released.
//
// A root is counted before the open checks the image record and released
// if the check fails, so a collection either sees the count or marks the
// image from its (then still live) record.
type OpenImages struct {
	mu sync.Mutex
	n  map[engine.ChunkID]int
	// first, if set, runs on an image content's first open, before the
	// open checks the record (a cluster-wide in-use lease is taken there).
	first func(ctx context.Context, root engine.ChunkID)
}

var _ engine.RootSource = (*OpenImages)(nil)

// NewOpenImages returns an empty set.
func NewOpenImages() *OpenImages { return &OpenImages{n: map[engine.ChunkID]int{}} }

// OnFirstOpen sets a function to run when a content that had no open
// file is opened, before the open checks the image record; the open waits
// for it. Set it before mounting.
func (o *OpenImages) OnFirstOpen(f func(ctx context.Context, root engine.ChunkID)) { o.first = f }

func (o *OpenImages) acquire(ctx context.Context, root engine.ChunkID) {
	o.mu.Lock()
	o.n[root]++
	first := o.n[root] == 1
	o.mu.Unlock()
	if first && o.first != nil {
		o.first(ctx, root)
	}
}

func (o *OpenImages) release(root engine.ChunkID) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n[root]--; o.n[root] <= 0 {
		delete(o.n, root)
	}
}

// LiveRoots returns the manifest roots of the images with open files.
func (o *OpenImages) LiveRoots(context.Context) ([]engine.ChunkID, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]engine.ChunkID, 0, len(o.n))
	for root := range o.n {
		out = append(out, root)
	}
	return out, nil
}

// Open returns the number of open files.
func (o *OpenImages) Open() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	total := 0
	for _, n := range o.n {
		total += n
	}
	return total
}
