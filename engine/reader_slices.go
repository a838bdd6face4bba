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
// modified; they stay valid for as long as the caller keeps them (their
// buffers are never recycled — SlicesHeld lends them instead). The chunks
// a request needs that are not cached are loaded concurrently, so one
// large request (a 1 MiB FUSE read spans ~16 chunks) costs about one chunk
// load, not sixteen in a row. Sequential access triggers read-ahead as
// ReadAtContext does.
func (r *ImageReader) Slices(ctx context.Context, off int64, n int, dst [][]byte) ([][]byte, int, error) {
	dst, got, release, err := r.SlicesHeld(ctx, off, n, dst)
	if release != nil {
		release.escape()
	}
	return dst, got, err
}

// Held is the set of cached chunks SlicesHeld lent; Release gives them
// back (once), after which the slices must not be used.
type Held struct {
	c       *ChunkCache
	entries []*cacheEntry
}

// Release returns the lent chunks to the cache. It may be called on nil.
func (h *Held) Release() {
	if h == nil || h.c == nil {
		return
	}
	for _, e := range h.entries {
		if e != nil {
			h.c.release(e)
		}
	}
	h.c, h.entries = nil, nil
}

// escape keeps the lent chunks for good: their buffers are never recycled.
func (h *Held) escape() {
	if h == nil || h.c == nil {
		return
	}
	h.c.mu.Lock()
	for _, e := range h.entries {
		if e != nil {
			e.escaped = true
		}
	}
	h.c.mu.Unlock()
	h.Release()
}

// SlicesHeld is Slices with the chunks lent rather than given: the slices
// are valid until the returned Held is released (always release it, also
// after an error; it may be nil). Their buffers are then recycled for
// later loads, which spares the allocation and page faults of fresh
// memory on every chunk.
func (r *ImageReader) SlicesHeld(ctx context.Context, off int64, n int, dst [][]byte) ([][]byte, int, *Held, error) {
	if off < 0 || n < 0 {
		return dst, 0, nil, fmt.Errorf("read %d at %d: %w: negative offset or length", n, off, ErrInvalid)
	}
	if off >= r.m.Size {
		return dst, 0, nil, io.EOF
	}
	if n == 0 {
		return dst, 0, nil, nil
	}
	end := min(off+int64(n), r.m.Size)
	sequential := r.lastEnd.Swap(end) == off || off == 0
	first, last := r.m.Find(off), r.m.Find(end-1)

	held, err := r.acquireRange(ctx, first, last)
	if err != nil {
		return dst, 0, held, err
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
			d := held.entries[i-first].data
			dst = append(dst, d[within:within+want:within+want])
		}
		pos += want
	}
	if sequential && r.cfg.ReadAhead > 0 {
		r.readAhead(ctx, last+1, last-first+1)
	}
	got := int(end - off)
	if got < n {
		return dst, got, held, io.EOF
	}
	return dst, got, held, nil
}

// acquireRange acquires chunks first..last (zero runs stay nil), loading
// those not cached concurrently. The Held is returned even on error so
// the caller releases what was acquired.
func (r *ImageReader) acquireRange(ctx context.Context, first, last int) (*Held, error) {
	held := &Held{c: r.cache, entries: make([]*cacheEntry, last-first+1)}
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
		e, err := r.acquire(ctx, i)
		if err != nil {
			return held, err
		}
		held.entries[i-first] = e
	}
	err := r.loadAll(ctx, missing, func(i int, e *cacheEntry) { held.entries[i-first] = e })
	return held, err
}

// sliceLoaders bounds the goroutines one request uses to load chunks.
const sliceLoaders = 4

// loadAll acquires the chunks at the given indexes, up to sliceLoaders at
// a time (the caller's goroutine among them), and hands each to put. put
// runs for every chunk acquired, also when another fails.
func (r *ImageReader) loadAll(ctx context.Context, idx []int, put func(i int, e *cacheEntry)) error {
	if len(idx) == 1 {
		e, err := r.acquire(ctx, idx[0])
		if err == nil {
			put(idx[0], e)
		}
		return err
	}
	var (
		next    atomic.Int64
		mu      sync.Mutex
		loadErr error
		wg      sync.WaitGroup
	)
	work := func() {
		for {
			k := int(next.Add(1) - 1)
			if k >= len(idx) {
				return
			}
			e, err := r.acquire(ctx, idx[k])
			mu.Lock()
			if err != nil {
				loadErr = err
			} else {
				put(idx[k], e)
			}
			mu.Unlock()
			if err != nil {
				return
			}
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
