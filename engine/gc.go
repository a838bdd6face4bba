package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// GCConfig configures garbage collection.
type GCConfig struct {
	// Grace is the minimum age of a chunk before it may be swept: it
	// protects writes this node cannot see pinned (an upload on another
	// node that found the chunk present, clock skew). Zero means none,
	// which is safe on a single node (pins cover every upload) and what
	// tests use; the serve default is one hour.
	Grace time.Duration
	// BatchSize is the number of chunks deleted per store call; 0 means 1024.
	BatchSize int
	// Now may be replaced in tests.
	Now func() time.Time
}

// RootSource yields extra manifest roots a collection must keep, beyond
// those of the image records (a cluster adds uploads in flight on other
// nodes, or images being replicated).
type RootSource interface {
	LiveRoots(ctx context.Context) ([]ChunkID, error)
}

// Reclaimer is implemented by stores that need a step after a sweep to
// make deletions durable and give the space back (pebblestore compacts).
type Reclaimer interface {
	Reclaim(ctx context.Context) error
}

// GCStats reports one collection.
type GCStats struct {
	Images       int           `json:"images"`        // image records whose manifests were marked
	Marked       int           `json:"marked"`        // distinct chunks and manifest blobs kept as live
	Scanned      int           `json:"scanned"`       // chunks in the store
	Swept        int           `json:"swept"`         // chunks deleted
	SweptBytes   int64         `json:"swept_bytes"`   // their stored (encoded) size
	KeptYoung    int           `json:"kept_young"`    // garbage younger than the grace period
	KeptPinned   int           `json:"kept_pinned"`   // garbage pinned by an upload in flight
	Grace        time.Duration `json:"grace_ns"`      // the grace period used
	Duration     time.Duration `json:"duration_ns"`   // how long the collection took
	StartedAt    time.Time     `json:"started_at"`    // when it began
	ChunksBefore int           `json:"chunks_before"` // = Scanned
	ChunksAfter  int           `json:"chunks_after"`  // Scanned - Swept
}

// Collector deletes chunks no image refers to. A collection:
//
//  1. notes its start time T and starts retaining released pins;
//  2. marks: lists every image record that is not deleted, loads its
//     manifest (and that of data staged for an import) and keeps its chunks
//     and manifest blobs (plus the roots of
//     any RootSource); a manifest that cannot be loaded aborts the
//     collection, since an incomplete mark must never lead to a sweep;
//  3. sweeps: lists the store and deletes, in batches, chunks that are not
//     marked, were first written before T - Grace and are not pinned or
//     retained by an upload (Pins.Sweep holds the pin lock while deleting);
//  4. lets the store reclaim the space (Reclaimer), outside the pin lock.
//
// An upload pins every chunk before its Has/Put and keeps the pins until
// its record is committed, so a chunk it relies on is either seen pinned
// by the sweep or deleted before its Has (which then writes it again).
// Collections on one Collector never overlap. Safe for concurrent use.
type Collector struct {
	images ImageStore
	store  GCStore
	pins   *Pins
	cfg    GCConfig
	extra  []RootSource
	log    *slog.Logger

	mu   sync.Mutex // one collection at a time
	last GCStats
}

// NewCollector returns a collector for store. pins must be the set the
// store's uploads pin into (Service's).
func NewCollector(images ImageStore, store GCStore, pins *Pins, cfg GCConfig, log *slog.Logger, extra ...RootSource) *Collector {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1024
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Collector{images: images, store: store, pins: pins, cfg: cfg, extra: extra, log: log}
}

// Grace returns the configured grace period.
func (c *Collector) Grace() time.Duration { return c.cfg.Grace }

// Last returns the stats of the latest completed collection.
func (c *Collector) Last() GCStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Collect runs one collection with the configured grace period.
func (c *Collector) Collect(ctx context.Context) (GCStats, error) {
	return c.CollectWithGrace(ctx, c.cfg.Grace)
}

// CollectWithGrace runs one collection with the given grace period.
func (c *Collector) CollectWithGrace(ctx context.Context, grace time.Duration) (GCStats, error) {
	if grace < 0 {
		return GCStats{}, Errorf(ErrInvalid, "negative GC grace period %v", grace)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := GCStats{Grace: grace, StartedAt: c.cfg.Now()}
	endCollect := c.pins.beginCollect()
	defer endCollect()

	live, err := c.mark(ctx, &st)
	if err != nil {
		return st, err
	}
	cutoff := st.StartedAt.Add(-grace).Unix()
	batch := make([]ChunkID, 0, c.cfg.BatchSize)
	sizes := make(map[ChunkID]uint32, c.cfg.BatchSize)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		kept, err := c.pins.Sweep(batch, func(ids []ChunkID) error {
			if err := c.store.DeleteChunks(ctx, ids); err != nil {
				return err
			}
			st.Swept += len(ids)
			for _, id := range ids {
				st.SweptBytes += int64(sizes[id])
			}
			return nil
		})
		st.KeptPinned += kept
		batch = batch[:0]
		clear(sizes)
		if err != nil {
			return fmt.Errorf("gc: sweep: %w", err)
		}
		return nil
	}
	// Deleting while listing is safe: the listing is a snapshot iterator
	// in the stores we have, and a chunk deleted twice is ignored.
	for info, err := range c.store.ListChunks(ctx) {
		if err != nil {
			return st, fmt.Errorf("gc: list chunks: %w", err)
		}
		st.Scanned++
		if _, ok := live[info.ID]; ok {
			continue
		}
		if info.WrittenAt > cutoff || (grace > 0 && info.WrittenAt == cutoff) {
			st.KeptYoung++
			continue
		}
		batch = append(batch, info.ID)
		sizes[info.ID] = info.StoredSize
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return st, err
			}
		}
	}
	if err := flush(); err != nil {
		return st, err
	}
	if r, ok := c.store.(Reclaimer); ok && st.Swept > 0 {
		if err := r.Reclaim(ctx); err != nil {
			return st, fmt.Errorf("gc: reclaim space: %w", err)
		}
	}
	st.Duration = time.Since(st.StartedAt)
	st.ChunksBefore, st.ChunksAfter = st.Scanned, st.Scanned-st.Swept
	c.last = st
	c.log.Info("gc done", "images", st.Images, "marked", st.Marked, "scanned", st.Scanned,
		"swept", st.Swept, "swept_bytes", st.SweptBytes, "kept_young", st.KeptYoung,
		"kept_pinned", st.KeptPinned, "grace", grace, "took", st.Duration)
	return st, nil
}

// mark returns every chunk ID the live images and extra sources refer to.
func (c *Collector) mark(ctx context.Context, st *GCStats) (map[ChunkID]struct{}, error) {
	imgs, err := c.images.ListImages(ctx, func(img *Image) bool {
		return img.Status != StatusDeleted && (!img.ManifestRoot.IsZero() || img.Staged != nil)
	})
	if err != nil {
		return nil, fmt.Errorf("gc: list images: %w", err)
	}
	roots := make([]ChunkID, 0, len(imgs))
	for _, img := range imgs {
		if !img.ManifestRoot.IsZero() {
			roots = append(roots, img.ManifestRoot)
		}
		// Data staged for a glance-direct import is live until imported.
		if img.Staged != nil && !img.Staged.Root.IsZero() {
			roots = append(roots, img.Staged.Root)
		}
	}
	st.Images = len(imgs)
	for _, src := range c.extra {
		more, err := src.LiveRoots(ctx)
		if err != nil {
			return nil, fmt.Errorf("gc: live roots: %w", err)
		}
		roots = append(roots, more...)
	}
	live := map[ChunkID]struct{}{}
	for _, root := range roots {
		if _, done := live[root]; done {
			continue
		}
		if err := markManifest(ctx, c.store, root, live); err != nil {
			return nil, fmt.Errorf("gc: mark manifest %s (collection aborted, nothing swept): %w", root, err)
		}
	}
	st.Marked = len(live)
	return live, nil
}

func markManifest(ctx context.Context, cs ChunkStore, root ChunkID, live map[ChunkID]struct{}) error {
	blobs, err := ManifestBlobIDs(ctx, cs, root)
	if err != nil {
		return err
	}
	m, err := LoadManifest(ctx, cs, root)
	if err != nil {
		return err
	}
	for _, id := range blobs {
		live[id] = struct{}{}
	}
	for _, ch := range m.Chunks {
		if !ch.ID.IsZero() {
			live[ch.ID] = struct{}{}
		}
	}
	return nil
}

// Run collects every interval until ctx ends, logging failures. It is what
// `mosaic serve` runs in the background.
func (c *Collector) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := c.Collect(ctx); err != nil && !errors.Is(err, context.Canceled) {
				c.log.Error("gc failed", "err", err)
			}
		}
	}
}
