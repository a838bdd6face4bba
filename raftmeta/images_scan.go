package raftmeta

import (
	"context"

	"github.com/mosaicimg/mosaic/engine"
)

var _ engine.ImageScanner = (*Node)(nil)

// ScanImages implements engine.ImageScanner: visit sees the stored
// records themselves, without copies. They are immutable (Apply replaces
// records, never changes them), so visit may keep them but not modify them.
// The read lock is held during the scan.
func (n *Node) ScanImages(ctx context.Context, visit func(*engine.Image)) error {
	if err := n.readBarrier(ctx); err != nil {
		return err
	}
	n.fsm.read(func(st *state) {
		for _, img := range st.images {
			visit(img)
		}
	})
	return nil
}
