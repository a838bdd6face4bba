package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// ImageCacheConfig configures a node's image cache.
type ImageCacheConfig struct {
	// Dir holds the cached copies (Dir/<id>), their records
	// (Dir/<id>.json), copies being written (Dir/incomplete/) and the
	// prefetch queue (Dir/queue/<id>).
	Dir string
	// MaxBytes is Glance's image_cache_max_size: after each new copy the
	// least recently used copies are removed until the cache fits (a soft
	// limit: a copy larger than the limit is kept until the next one
	// arrives). 0 means 10 GiB.
	MaxBytes int64
	// SweepInterval is how often copies of deleted or replaced images are
	// removed; 0 means one minute.
	SweepInterval time.Duration
	// CacheInUseAfter, if positive, caches images in use without an
	// operator's PUT: an image held open on the node's mount this long
	// (a VM running from it, not a probe like qemu-img info) is queued,
	// and its next opens read the copy through FUSE passthrough. Glance's
	// cache likewise fills itself from the images clients download.
	// Images larger than MaxBytes are left to explicit requests. 0 turns
	// it off.
	CacheInUseAfter time.Duration
	Logger          *slog.Logger
	// Now may be replaced in tests.
	Now func() time.Time
}

// Validate fills defaults and checks the configuration.
func (c *ImageCacheConfig) Validate() error {
	if c.Dir == "" {
		return errors.New("image cache config: empty directory")
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 10 << 30
	}
	if c.MaxBytes < 0 {
		return errors.New("image cache config: negative size")
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// CacheSource is what the image cache needs from the engine; *Service
// implements it.
type CacheSource interface {
	Get(ctx context.Context, id string) (*Image, error)
	OpenRecord(ctx context.Context, img *Image) (*ImageReader, error)
}

// CachedImage describes one complete cached copy, as Glance's cache API
// reports it.
type CachedImage struct {
	ImageID      string    `json:"image_id"`
	Hits         int64     `json:"hits"`
	LastAccessed time.Time `json:"last_accessed"`
	LastModified time.Time `json:"last_modified"`
	Size         int64     `json:"size"`
	// Root is the manifest the copy was written from; a copy serves only
	// the image record with the same root.
	Root ChunkID `json:"manifest_root"`
}

// CacheState is the cache's content: complete copies (most recently used
// first) and the IDs waiting to be fetched, in queue order.
type CacheState struct {
	Cached []CachedImage
	Queued []string
}

// ImageCache is a node's cache of complete image copies in plain files, the
// role of Glance's image cache (image_cache_dir): an operator prefetches
// images into it (PUT /v2/cache/{id}), and the FUSE mount serves an image
// that has a copy through FUSE passthrough, so the kernel reads the file
// directly. Copies are written only from verified chunks, sparse where the
// manifest has zero runs, and published by rename once complete and synced.
//
// The cache API is admin-only, as in Glance (policies cache_list,
// cache_image and cache_delete default to role:admin): a caller without the
// admin role, including the unauthenticated context, gets ErrForbidden;
// a context without a Caller (the system) may do anything.
//
// ImageCache is safe for concurrent use. It owns a goroutine that fetches
// queued images and sweeps stale copies; Close stops it.
type ImageCache struct {
	cfg ImageCacheConfig
	src CacheSource
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*CachedImage
	queue   []string // IDs in queue order
	wake    chan struct{}

	cancel  context.CancelFunc
	stopped <-chan struct{} // closed by Close
	done    chan struct{}
}

// OpenImageCache opens (creating if needed) the cache in cfg.Dir: it keeps
// the complete copies found there, discards partial ones, resumes the
// queue, and starts fetching.
func OpenImageCache(cfg ImageCacheConfig, src CacheSource) (*ImageCache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "incomplete"), filepath.Join(cfg.Dir, "queue")} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			return nil, fmt.Errorf("image cache: %w", err)
		}
	}
	c := &ImageCache{cfg: cfg, src: src, log: cfg.Logger, entries: map[string]*CachedImage{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
	if err := c.load(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.stopped = cancel, ctx.Done()
	go c.run(ctx)
	return c, nil
}

// Close stops fetching (a copy being written is discarded and stays
// queued) and waits for the cache's goroutine.
func (c *ImageCache) Close() error {
	c.cancel()
	<-c.done
	return nil
}

func (c *ImageCache) dataPath(id string) string { return filepath.Join(c.cfg.Dir, id) }
func (c *ImageCache) metaPath(id string) string { return filepath.Join(c.cfg.Dir, id+".json") }
func (c *ImageCache) partPath(id string) string { return filepath.Join(c.cfg.Dir, "incomplete", id) }
func (c *ImageCache) markPath(id string) string { return filepath.Join(c.cfg.Dir, "queue", id) }

// validCacheID keeps IDs usable as file names in the cache directory.
func validCacheID(id string) bool {
	return id != "" && id != "." && id != ".." && len(id) <= 255 &&
		!strings.ContainsAny(id, "/\x00") && !strings.HasSuffix(id, ".json")
}

func (c *ImageCache) load() error {
	if err := removeAllIn(filepath.Join(c.cfg.Dir, "incomplete")); err != nil {
		return fmt.Errorf("image cache: clear incomplete copies: %w", err)
	}
	ents, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !validCacheID(id) {
			continue
		}
		var ci CachedImage
		b, err := os.ReadFile(c.metaPath(id))
		if err == nil {
			err = json.Unmarshal(b, &ci)
		}
		st, serr := os.Stat(c.dataPath(id))
		if err != nil || serr != nil || ci.ImageID != id || st.Size() != ci.Size {
			c.log.Warn("image cache: dropping an unusable copy", "image", id, "err", errors.Join(err, serr))
			c.removeFiles(id)
			continue
		}
		c.entries[id] = &ci
	}
	// Data files without a record are copies whose publication was cut
	// short; they cannot be trusted.
	for _, e := range ents {
		if e.IsDir() || strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		if _, ok := c.entries[e.Name()]; !ok {
			_ = os.Remove(c.dataPath(e.Name()))
		}
	}
	marks, err := os.ReadDir(filepath.Join(c.cfg.Dir, "queue"))
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	slices.SortFunc(marks, func(a, b os.DirEntry) int {
		ia, _ := a.Info()
		ib, _ := b.Info()
		if ia == nil || ib == nil {
			return 0
		}
		return ia.ModTime().Compare(ib.ModTime())
	})
	for _, m := range marks {
		if validCacheID(m.Name()) {
			c.queue = append(c.queue, m.Name())
		}
	}
	return nil
}

func removeAllIn(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// removeFiles deletes a copy's data and record (not its queue marker).
func (c *ImageCache) removeFiles(id string) {
	for _, p := range []string{c.metaPath(id), c.dataPath(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("image cache: remove", "path", p, "err", err)
		}
	}
}

// State returns the cached copies and the queue (GET /v2/cache).
func (c *ImageCache) State(ctx context.Context) (*CacheState, error) {
	if err := Authorize(ctx, ActionCacheList, Target{}); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &CacheState{Cached: make([]CachedImage, 0, len(c.entries)), Queued: slices.Clone(c.queue)}
	for _, e := range c.entries {
		st.Cached = append(st.Cached, *e)
	}
	slices.SortFunc(st.Cached, func(a, b CachedImage) int {
		return cmp.Or(b.LastAccessed.Compare(a.LastAccessed), strings.Compare(a.ImageID, b.ImageID))
	})
	if st.Queued == nil {
		st.Queued = []string{}
	}
	return st, nil
}

// Queue asks for a copy of an active image (PUT /v2/cache/{id}); it is
// fetched in the background. Queueing a cached or queued image changes
// nothing.
func (c *ImageCache) Queue(ctx context.Context, id string) error {
	img, err := c.src.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return Errorf(ErrNotFound, "Image %s not found.", id)
	}
	if err != nil {
		return err
	}
	if err := Authorize(ctx, ActionCacheImage, Target{Image: img}); err != nil {
		return err
	}
	if img.Status != StatusActive || !img.HasData() {
		return Errorf(ErrInvalid, "Only images with status active can be targeted for queueing")
	}
	if !validCacheID(id) {
		return Errorf(ErrInvalid, "Image ID %q cannot be cached.", id)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[id]; (ok && e.Root == img.ManifestRoot) || slices.Contains(c.queue, id) {
		return nil
	}
	if err := os.WriteFile(c.markPath(id), nil, 0o640); err != nil {
		return fmt.Errorf("image cache: queue %s: %w", id, err)
	}
	c.queue = append(c.queue, id)
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// Delete removes an image's copy and its queue entry (DELETE
// /v2/cache/{id}). An unknown image that the cache does not hold either
// is ErrNotFound.
func (c *ImageCache) Delete(ctx context.Context, id string) error {
	_, err := c.src.Get(ctx, id)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if errors.Is(err, ErrNotFound) {
		c.mu.Lock()
		_, cached := c.entries[id]
		queued := slices.Contains(c.queue, id)
		c.mu.Unlock()
		if !cached && !queued {
			return Errorf(ErrNotFound, "Image %s not found.", id)
		}
	}
	if err := Authorize(ctx, ActionCacheDelete, Target{}); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(id)
	c.unqueueLocked(id)
	return nil
}

// ClearTarget selects what Clear empties.
type ClearTarget string

// Targets of x-image-cache-clear-target.
const (
	ClearAll   ClearTarget = ""
	ClearCache ClearTarget = "cache"
	ClearQueue ClearTarget = "queue"
)

// Clear removes every copy, every queue entry, or both (DELETE /v2/cache)
// and returns how many of each it removed.
func (c *ImageCache) Clear(ctx context.Context, target ClearTarget) (cached, queued int, err error) {
	if err := Authorize(ctx, ActionCacheDelete, Target{}); err != nil {
		return 0, 0, err
	}
	if target != ClearAll && target != ClearCache && target != ClearQueue {
		return 0, 0, Errorf(ErrInvalid, "If provided 'x-image-cache-clear-target' must be 'cache', 'queue' or empty string.")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if target != ClearQueue {
		for id := range c.entries {
			c.dropLocked(id)
			cached++
		}
	}
	if target != ClearCache {
		for _, id := range slices.Clone(c.queue) {
			c.unqueueLocked(id)
			queued++
		}
	}
	return cached, queued, nil
}

func (c *ImageCache) dropLocked(id string) {
	if _, ok := c.entries[id]; ok {
		delete(c.entries, id)
		c.removeFiles(id)
	}
}

func (c *ImageCache) unqueueLocked(id string) {
	if i := slices.Index(c.queue, id); i >= 0 {
		c.queue = slices.Delete(c.queue, i, i+1)
		if err := os.Remove(c.markPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
			c.log.Warn("image cache: remove queue marker", "image", id, "err", err)
		}
	}
}

// InUse tells the cache that img was opened on the node's mount and
// returns the function to call when it is closed. With CacheInUseAfter set,
// an image with no copy that stays open that long is queued for caching.
func (c *ImageCache) InUse(img *Image) (closed func()) {
	if c.cfg.CacheInUseAfter <= 0 || img.Size == nil || *img.Size > c.cfg.MaxBytes {
		return func() {}
	}
	c.mu.Lock()
	e, cached := c.entries[img.ID]
	wanted := (cached && e.Root == img.ManifestRoot) || slices.Contains(c.queue, img.ID)
	c.mu.Unlock()
	if wanted {
		return func() {}
	}
	id := img.ID
	t := time.AfterFunc(c.cfg.CacheInUseAfter, func() {
		select {
		case <-c.stopped:
			return // the node is shutting down; its engine may be closed
		default:
		}
		// The system acts here, not the user who opened the file.
		if err := c.Queue(context.Background(), id); err != nil {
			c.log.Warn("image cache: could not queue an image in use", "image", id, "err", err)
			return
		}
		c.log.Info("image cache: caching an image in use", "image", id)
	})
	return func() { t.Stop() }
}

// OpenCopy returns the complete copy of img, if the cache holds one written
// from img's manifest, and counts a hit. The caller closes the file.
func (c *ImageCache) OpenCopy(ctx context.Context, img *Image) (*os.File, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[img.ID]
	if !ok || e.Root != img.ManifestRoot || img.Size == nil || *img.Size != e.Size {
		return nil, false
	}
	f, err := os.Open(c.dataPath(img.ID))
	if err != nil {
		c.log.Warn("image cache: open copy", "image", img.ID, "err", err)
		return nil, false
	}
	e.Hits++
	e.LastAccessed = c.cfg.Now()
	c.writeMeta(e)
	return f, true
}

// writeMeta records an entry (best effort for hit counts; the record that
// publishes a copy is written by fetch, synced).
func (c *ImageCache) writeMeta(e *CachedImage) {
	b, _ := json.Marshal(e)
	tmp := c.metaPath(e.ImageID) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err == nil {
		err = os.Rename(tmp, c.metaPath(e.ImageID))
		if err != nil {
			c.log.Warn("image cache: write record", "image", e.ImageID, "err", err)
		}
	}
}

// run fetches queued images one at a time and sweeps stale copies.
func (c *ImageCache) run(ctx context.Context) {
	defer close(c.done)
	sweep := time.NewTicker(c.cfg.SweepInterval)
	defer sweep.Stop()
	c.sweep(ctx)
	for {
		c.mu.Lock()
		next := ""
		if len(c.queue) > 0 {
			next = c.queue[0]
		}
		c.mu.Unlock()
		if next != "" {
			c.fetchQueued(ctx, next)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		case <-sweep.C:
			c.sweep(ctx)
		}
	}
}

// fetchQueued writes the copy of a queued image, then takes it off the
// queue (unless the fetch was interrupted by Close).
func (c *ImageCache) fetchQueued(ctx context.Context, id string) {
	start := time.Now()
	e, err := c.fetch(ctx, id)
	if ctx.Err() != nil {
		return // stays queued; resumed at the next start
	}
	c.mu.Lock()
	stillQueued := slices.Contains(c.queue, id)
	c.unqueueLocked(id)
	if err == nil && stillQueued {
		c.entries[id] = e // replaces any older copy (its files were overwritten)
		c.pruneLocked(id)
	} else if err == nil {
		c.removeFiles(id) // deleted from the queue while being fetched
	}
	c.mu.Unlock()
	if err != nil {
		c.log.Error("image cache: prefetch failed", "image", id, "err", err)
		return
	}
	c.log.Info("image cached", "image", id, "size", e.Size, "took", time.Since(start))
}

// fetch writes a complete, synced copy of the image and its record, and
// returns the record.
func (c *ImageCache) fetch(ctx context.Context, id string) (*CachedImage, error) {
	// A copy is written once, from start to end: on a mount host its
	// chunks pass through the chunk cache instead of replacing what
	// running VMs read.
	ctx = WithoutCaching(ctx)
	img, err := c.src.Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	if img.Status != StatusActive {
		return nil, fmt.Errorf("image cache: fetch %s: status %s", id, img.Status)
	}
	r, err := c.src.OpenRecord(ctx, img)
	if err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	defer r.Close()
	part := c.partPath(id)
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(part)
		}
	}()
	if err := writeSparse(ctx, f, r); err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: sync: %w", id, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	now := c.cfg.Now()
	e := &CachedImage{ImageID: id, LastAccessed: now, LastModified: now, Size: r.Size(), Root: img.ManifestRoot}
	// Publish: data first, then the record that vouches for it.
	if err := os.Rename(part, c.dataPath(id)); err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	ok = true
	b, _ := json.Marshal(e)
	if err := writeFileSync(c.metaPath(id), b); err != nil {
		os.Remove(c.dataPath(id))
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	if err := syncDir(c.cfg.Dir); err != nil {
		return nil, fmt.Errorf("image cache: fetch %s: %w", id, err)
	}
	return e, nil
}

// writeSparse writes the image's content to f, leaving zero runs as holes.
func writeSparse(ctx context.Context, f *os.File, r *ImageReader) error {
	m := r.Manifest()
	const batch = 4 << 20
	buf := make([]byte, 0, batch+int64(256<<10))
	for i := 0; i < len(m.Chunks); {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := m.Chunks[i]
		if c.ID.IsZero() {
			i++
			continue
		}
		// A run of data chunks, up to about batch bytes.
		off, n := c.Offset, int64(0)
		for i < len(m.Chunks) && !m.Chunks[i].ID.IsZero() && n < batch {
			n += int64(m.Chunks[i].Size)
			i++
		}
		if int64(cap(buf)) < n {
			buf = make([]byte, n)
		}
		b := buf[:n]
		if _, err := r.ReadAtContext(ctx, b, off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return f.Truncate(m.Size)
}

func writeFileSync(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// pruneLocked removes least recently used copies (never keep) until the
// cache fits in MaxBytes.
func (c *ImageCache) pruneLocked(keep string) {
	var total int64
	lru := make([]*CachedImage, 0, len(c.entries))
	for _, e := range c.entries {
		total += e.Size
		if e.ImageID != keep {
			lru = append(lru, e)
		}
	}
	slices.SortFunc(lru, func(a, b *CachedImage) int { return a.LastAccessed.Compare(b.LastAccessed) })
	for _, e := range lru {
		if total <= c.cfg.MaxBytes {
			return
		}
		c.log.Info("image cache: pruned", "image", e.ImageID, "size", e.Size)
		total -= e.Size
		c.dropLocked(e.ImageID)
	}
}

// sweep removes copies whose image was deleted or whose content no longer
// matches the record (Glance removes the cached file with the image).
func (c *ImageCache) sweep(ctx context.Context) {
	c.mu.Lock()
	ids := make([]string, 0, len(c.entries))
	for id := range c.entries {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	for _, id := range ids {
		img, err := c.src.Get(LocalRead(ctx), id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			continue // try again at the next sweep
		}
		c.mu.Lock()
		if e, ok := c.entries[id]; ok && (err != nil || img.ManifestRoot != e.Root) {
			c.log.Info("image cache: removing the copy of a deleted image", "image", id)
			c.dropLocked(id)
		}
		c.mu.Unlock()
	}
}
