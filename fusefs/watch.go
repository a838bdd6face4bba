package fusefs

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// snapshot is what the kernel may have cached about the tree: the shown
// images (ID → manifest root and status) and the by-name links.
type snapshot struct {
	images map[string]string
	names  map[string]string
}

func (r *Root) snapshot(ctx context.Context) (snapshot, error) {
	imgs, err := r.src.List(engine.LocalRead(ctx), shown)
	if err != nil {
		return snapshot{}, err
	}
	s := snapshot{images: make(map[string]string, len(imgs)), names: uniqueNames(imgs)}
	for _, img := range imgs {
		s.images[img.ID] = img.ManifestRoot.String() + "/" + string(img.Status)
	}
	return s, nil
}

// invalidate tells the kernel to forget every name whose meaning changed
// between prev and cur: new images (negative entries), vanished or
// replaced images, and by-name links that appeared, vanished or moved.
func (r *Root) invalidate(prev, cur snapshot) {
	notify := func(dir interface{ NotifyEntry(string) syscall.Errno }, where, name string) {
		// ENOENT: the kernel had nothing cached under that name.
		if errno := dir.NotifyEntry(name); errno != 0 && errno != syscall.ENOENT {
			r.o.Logger.Debug("fuse: invalidate entry", "dir", where, "name", name, "errno", errno)
		}
	}
	for id, v := range cur.images {
		if prev.images[id] != v {
			notify(&r.images.Inode, "images", id)
		}
	}
	for id := range prev.images {
		if _, ok := cur.images[id]; !ok {
			notify(&r.images.Inode, "images", id)
		}
	}
	for n, id := range cur.names {
		if prev.names[n] != id {
			notify(&r.byName.Inode, "by-name", n)
		}
	}
	for n := range prev.names {
		if _, ok := cur.names[n]; !ok {
			notify(&r.byName.Inode, "by-name", n)
		}
	}
}

// watch polls the image records until ctx ends and invalidates what
// changed since prev, so long kernel timeouts never hide a change for
// longer than one poll interval. prev must be taken before the kernel
// could cache anything (before mounting).
func (r *Root) watch(ctx context.Context, prev snapshot) {
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := r.snapshot(ctx)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				r.o.Logger.Warn("fuse: watch image records", "err", err)
			}
			continue
		}
		r.invalidate(prev, cur)
		prev = cur
	}
}
