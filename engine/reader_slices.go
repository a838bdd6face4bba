package engine

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Slices returns the bytes [off, off+n) of the image (fewer at its end,
// then with io.EOF) as a list of sub-slices of verified chunks, appended to
// dst, and their total length. Nothing is copied: the slices are shared with
// the chunk cache (and zero runs with a shared zero buffer) and must not be
// modified. The chunks a request needs that are not cached are loaded
// concurrently, so one large request (a 1 MiB FUSE read spans ~16 chunks)
// costs about one chunk load, not sixteen in a row. Sequential access
// triggers read-ahead as ReadAtContext does.
func (r *ImageReader) Slices(ctx context.Context, off int64, n int, dst [][]byte) ([][]byte, int, error) {
	if off < 0 || n < 0 {
		return dst, 0, fmt.Errorf("read %d at %d: %w: negative offset or length", n, off, ErrInvalid)
	}
	if off >= r.m.Size {
		return dst, 0, io.EOF
	}
	end := min(off+int64(n), r.m.Size)
	sequential := r.lastEnd.Swap(end) == off || off == 0
	first, last := r.m.Find(off), r.m.Find(end-1)

	datas := make([][]byte, last-first+1)
	var missing []int
	for i := first; i <= last; i++ {
		c := r.m.Chunks[i]
		if c.ID.IsZero() {
			continue
		}
		if !r.cache.Contains(c.ID) {
			missing = append(missing, i)
			continue
		}
		d, err := r.chunk(ctx, i)
		if err != nil {
			return dst, 0, err
		}
		datas[i-first] = d
	}
	if err := r.loadAll(ctx, missing, func(i int, d []byte) { datas[i-first] = d }); err != nil {
		return dst, 0, err
	}

	pos := off
	for i := first; i <= last; i++ {
		c := r.m.Chunks[i]
		within := pos - c.Offset
		want := min(end-pos, int64(c.Size)-within)
		if c.ID.IsZero() {
			for left := want; left > 0; {
				k := min(left, int64(len(zeroBuf)))
				dst = append(dst, zeroBuf[:k:k])
				left -= k
			}
		} else {
			d := datas[i-first]
			dst = append(dst, d[within:within+want:within+want])
		}
		pos += want
	}
	if sequential && r.cfg.ReadAhead > 0 {
		r.readAhead(ctx, last+1)
	}
	got := int(end - off)
	if got < n {
		return dst, got, io.EOF
	}
	return dst, got, nil
}

// sliceLoaders bounds the goroutines one Slices call uses to load chunks.
const sliceLoaders = 4

// loadAll loads the chunks at the given indexes, up to sliceLoaders at a
// time (the caller's goroutine among them), and hands each to put.
func (r *ImageReader) loadAll(ctx context.Context, idx []int, put func(i int, d []byte)) error {
	var (
		next    atomic.Int64
		errMu   sync.Mutex
		loadErr error
		wg      sync.WaitGroup
	)
	work := func() {
		for {
			k := int(next.Add(1) - 1)
			if k >= len(idx) {
				return
			}
			d, err := r.chunk(ctx, idx[k])
			if err != nil {
				errMu.Lock()
				loadErr = err
				errMu.Unlock()
				return
			}
			put(idx[k], d)
		}
	}
	for range min(len(idx), sliceLoaders) - 1 {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	work()
	wg.Wait()
	return loadErr
}
