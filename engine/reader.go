package engine

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// ReaderConfig configures image readers.
type ReaderConfig struct {
	// ReadAhead is how many chunks past a sequential read are fetched in
	// the background; 0 disables read-ahead.
	ReadAhead int
}

// DefaultReaderConfig returns the defaults.
func DefaultReaderConfig() ReaderConfig { return ReaderConfig{ReadAhead: 8} }

// ImageReader reads an image's content by offset. Every byte it returns
// comes from a chunk verified against its ID; zero runs are served without
// I/O. It is safe for concurrent use and holds no lock while reading.
type ImageReader struct {
	m     *Manifest
	store ChunkStore
	cache *ChunkCache
	cfg   ReaderConfig

	// lastEnd is the end offset of the latest read, to detect sequential
	// access.
	lastEnd atomic.Int64

	// Read-ahead: workers load chunks raNext, raNext+1, ... up to raEnd,
	// each taking the next index as soon as its load is done; sequential
	// reads move raEnd forward. Guarded by raMu.
	raMu      sync.Mutex
	raNext    int
	raEnd     int
	raWorkers int
	raWG      sync.WaitGroup
}

// maxReadAheadWorkers bounds the concurrent read-ahead loads of one reader.
const maxReadAheadWorkers = 4

// NewImageReader returns a reader over m.
func NewImageReader(m *Manifest, store ChunkStore, cache *ChunkCache, cfg ReaderConfig) *ImageReader {
	r := &ImageReader{m: m, store: store, cache: cache, cfg: cfg}
	r.lastEnd.Store(-1)
	return r
}

// Size returns the image size in bytes.
func (r *ImageReader) Size() int64 { return r.m.Size }

// Manifest returns the manifest being read. It must not be modified.
func (r *ImageReader) Manifest() *Manifest { return r.m }

// acquire returns the cache entry of chunk i with a ref held: release it
// with r.cache.release and do not touch its bytes after that.
func (r *ImageReader) acquire(ctx context.Context, i int) (*cacheEntry, error) {
	c := r.m.Chunks[i]
	return r.cache.acquire(ctx, c.ID, int(c.Size), func(ctx context.Context, buf []byte) ([]byte, error) {
		b, err := r.store.Get(ctx, c.ID, buf)
		if err != nil {
			return nil, fmt.Errorf("read chunk %s at offset %d: %w", c.ID, c.Offset, err)
		}
		if len(b) != int(c.Size) {
			return nil, &CorruptError{ID: c.ID, Got: SumChunk(b)}
		}
		return b, nil
	})
}

// touch loads chunk i into the cache without keeping it.
func (r *ImageReader) touch(ctx context.Context, i int) error {
	e, err := r.acquire(ctx, i)
	if err == nil {
		r.cache.release(e)
	}
	return err
}

// Prime loads and verifies the chunk holding byte off, so that a caller
// about to commit to a response (HTTP headers) learns of a corrupt or
// missing chunk while it can still answer with an error. Zero runs and
// offsets at or past the end need nothing.
func (r *ImageReader) Prime(ctx context.Context, off int64) error {
	i := r.m.Find(off)
	if i >= len(r.m.Chunks) || r.m.Chunks[i].ID.IsZero() {
		return nil
	}
	return r.touch(ctx, i)
}

// ReadAt implements io.ReaderAt without a context.
func (r *ImageReader) ReadAt(p []byte, off int64) (int, error) {
	return r.ReadAtContext(context.Background(), p, off)
}

// ReadAtContext reads len(p) bytes at off, fewer only at the end of the
// image (then with io.EOF).
func (r *ImageReader) ReadAtContext(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at %d: %w: negative offset", off, ErrInvalid)
	}
	if off >= r.m.Size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), r.m.Size)
	sequential := r.lastEnd.Swap(end) == off || off == 0
	first, last := r.m.Find(off), r.m.Find(end-1)
	held, err := r.acquireRange(ctx, first, last)
	defer held.Release()
	if err != nil {
		return 0, err
	}
	n := 0
	for i := first; i <= last; i++ {
		c := r.m.Chunks[i]
		within := off + int64(n) - c.Offset
		want := min(end-off-int64(n), int64(c.Size)-within)
		if c.ID.IsZero() {
			clear(p[n : n+int(want)])
		} else {
			d := held.entries[i-first].data
			copy(p[n:n+int(want)], d[within:within+want])
		}
		n += int(want)
	}
	if sequential && r.cfg.ReadAhead > 0 {
		r.readAhead(ctx, last+1, last-first+1)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// readAhead moves the read-ahead window to the chunks after index from:
// up to ReadAhead of them, or three requests' worth when requests span
// more chunks (a 1 MiB read spans ~16). Workers keep loading until the
// window is full, each starting its next load as soon as the last one is
// done, so loads overlap the reader's own work instead of starting only
// when it calls again.
func (r *ImageReader) readAhead(ctx context.Context, from, perRequest int) {
	window := max(r.cfg.ReadAhead, 3*perRequest)
	end := min(from+window, len(r.m.Chunks))
	r.raMu.Lock()
	defer r.raMu.Unlock()
	switch {
	case from+window < r.raNext:
		// A new sequential run well behind the last one: start over.
		r.raNext, r.raEnd = from, end
	default:
		r.raNext = max(r.raNext, from)
		r.raEnd = max(r.raEnd, end)
	}
	limit := min(r.cfg.ReadAhead, maxReadAheadWorkers)
	ctx = context.WithoutCancel(ctx)
	for r.raWorkers < limit && r.raWorkers < r.raEnd-r.raNext {
		r.raWorkers++
		r.raWG.Add(1)
		go r.readAheadWorker(ctx)
	}
}

// readAheadWorker loads the window's chunks in order until it is empty.
// Load errors are left for the demand read to report.
func (r *ImageReader) readAheadWorker(ctx context.Context) {
	defer r.raWG.Done()
	for {
		r.raMu.Lock()
		if r.raNext >= r.raEnd {
			r.raWorkers--
			r.raMu.Unlock()
			return
		}
		i := r.raNext
		r.raNext++
		r.raMu.Unlock()
		c := r.m.Chunks[i]
		if c.ID.IsZero() || r.cache.Contains(c.ID) {
			continue
		}
		_ = r.touch(ctx, i)
	}
}

// Close waits for background read-ahead to finish.
func (r *ImageReader) Close() error {
	r.raWG.Wait()
	return nil
}

// WriteTo streams the whole image to w, verifying every chunk.
func (r *ImageReader) WriteTo(w io.Writer) (int64, error) {
	return r.CopyRange(context.Background(), w, 0, r.m.Size)
}

var zeroBuf = make([]byte, 256<<10)

// CopyRange writes bytes [off, off+n) of the image to w.
func (r *ImageReader) CopyRange(ctx context.Context, w io.Writer, off, n int64) (int64, error) {
	if off < 0 || n < 0 || off+n > r.m.Size {
		return 0, fmt.Errorf("copy range %d+%d of %d: %w", off, n, r.m.Size, ErrInvalid)
	}
	var written int64
	end := off + n
	for i := r.m.Find(off); i < len(r.m.Chunks) && off < end; i++ {
		c := r.m.Chunks[i]
		within := off - c.Offset
		want := min(end-off, int64(c.Size)-within)
		var err error
		if c.ID.IsZero() {
			for left := want; left > 0 && err == nil; {
				k := min(left, int64(len(zeroBuf)))
				_, err = w.Write(zeroBuf[:k])
				left -= k
			}
		} else {
			if r.cfg.ReadAhead > 0 {
				r.readAhead(ctx, i+1, 1)
			}
			var e *cacheEntry
			e, err = r.acquire(ctx, i)
			if err == nil {
				// io.Writer must not retain the slice: the buffer can
				// be recycled after the release.
				_, err = w.Write(e.data[within : within+want])
				r.cache.release(e)
			}
		}
		if err != nil {
			return written, err
		}
		written += want
		off += want
	}
	return written, nil
}
