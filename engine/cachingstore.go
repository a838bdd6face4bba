package engine

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// CachingStoreConfig configures a CachingStore.
type CachingStoreConfig struct {
	// MaxBytes bounds the cached chunks, counted uncompressed (so the disk
	// they take is at most this). Must be positive.
	MaxBytes int64
	Logger   *slog.Logger
}

// CachingStore is the chunk store of a host that owns no chunks (a
// hypervisor's mount host): Get serves chunks from a bounded local store
// and fetches misses from a slower source (the storage nodes), verifying
// every fetched chunk against its ID before it is cached or returned; the
// least recently used chunks are deleted from the local store beyond
// MaxBytes. Put, Has and Sync go through to the source, so the local store
// never holds the only copy of anything.
//
// Recency survives restarts approximately: a reopened cache orders the
// chunks it finds by the time they were written. CachingStore is safe for
// concurrent use.
type CachingStore struct {
	local  GCStore
	source ChunkStore
	max    int64
	log    *slog.Logger

	mu   sync.Mutex
	lru  *list.List // front = most recent; values are cachedChunk
	idx  map[ChunkID]*list.Element
	used int64
	st   CachingStats
}

type cachedChunk struct {
	id   ChunkID
	size int64
}

// CachingStats are a CachingStore's counters.
type CachingStats struct {
	// Hits and Misses count Gets served locally and fetched.
	Hits, Misses int64
	// FetchedBytes is what misses fetched from the source.
	FetchedBytes int64
	// PassedThrough counts fetches not kept (WithoutCaching), also
	// counted in Misses and FetchedBytes.
	PassedThrough int64
	// Evicted counts chunks deleted to stay within MaxBytes.
	Evicted int64
	// UsedBytes and MaxBytes are the cache's fill and bound.
	UsedBytes, MaxBytes int64
	Chunks              int
}

var _ ChunkStore = (*CachingStore)(nil)

// NewCachingStore returns a cache over local (which it owns: chunks not
// fetched through it are treated as cached too) in front of source.
func NewCachingStore(ctx context.Context, local GCStore, source ChunkStore, cfg CachingStoreConfig) (*CachingStore, error) {
	if cfg.MaxBytes <= 0 {
		return nil, errors.New("caching store: the cache size must be positive")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &CachingStore{local: local, source: source, max: cfg.MaxBytes, log: cfg.Logger,
		lru: list.New(), idx: map[ChunkID]*list.Element{}}
	var found []ChunkInfo
	for info, err := range local.ListChunks(ctx) {
		if err != nil {
			return nil, fmt.Errorf("caching store: scan the local cache: %w", err)
		}
		found = append(found, info)
	}
	slices.SortStableFunc(found, func(a, b ChunkInfo) int { return cmp.Compare(b.WrittenAt, a.WrittenAt) })
	for _, info := range found { // newest first: the back is the oldest
		c.idx[info.ID] = c.lru.PushBack(cachedChunk{id: info.ID, size: int64(info.Size)})
		c.used += int64(info.Size)
	}
	c.mu.Lock()
	victims := c.evictLocked()
	c.mu.Unlock()
	if err := c.delete(ctx, victims); err != nil {
		return nil, err
	}
	return c, nil
}

type passThroughKey struct{}

// WithoutCaching marks reads made with ctx as passing through a
// CachingStore: it serves the chunks it holds but does not keep the ones it
// fetches. The image cache writes its full copies this way, so that copying
// an image does not evict the chunks running VMs read from the chunk cache.
func WithoutCaching(ctx context.Context) context.Context {
	return context.WithValue(ctx, passThroughKey{}, true)
}

func passThrough(ctx context.Context) bool {
	v, _ := ctx.Value(passThroughKey{}).(bool)
	return v
}

// Get returns the verified chunk, from the local cache or else fetched
// from the source (and then cached, unless ctx is WithoutCaching).
func (c *CachingStore) Get(ctx context.Context, id ChunkID, buf []byte) ([]byte, error) {
	c.mu.Lock()
	el, ok := c.idx[id]
	if ok {
		c.lru.MoveToFront(el)
	}
	c.mu.Unlock()
	if ok {
		b, err := c.local.Get(ctx, id, buf)
		if err == nil {
			c.mu.Lock()
			c.st.Hits++
			c.mu.Unlock()
			return b, nil
		}
		// Evicted meanwhile, or damaged locally: fetch it again.
		c.log.Debug("caching store: local copy unusable, refetching", "chunk", id, "err", err)
		c.forget(id)
	}
	b, err := c.source.Get(ctx, id, buf)
	if err != nil {
		return nil, fmt.Errorf("caching store: fetch %s: %w", id, err)
	}
	if got := SumChunk(b); got != id {
		return nil, &CorruptError{ID: id, Got: got}
	}
	if passThrough(ctx) {
		c.mu.Lock()
		c.st.Misses++
		c.st.FetchedBytes += int64(len(b))
		c.st.PassedThrough++
		c.mu.Unlock()
		return b, nil
	}
	if err := c.local.Put(ctx, id, b); err != nil {
		c.log.Warn("caching store: cannot cache a fetched chunk", "chunk", id, "err", err)
		return b, nil
	}
	c.mu.Lock()
	c.st.Misses++
	c.st.FetchedBytes += int64(len(b))
	if _, dup := c.idx[id]; !dup {
		c.idx[id] = c.lru.PushFront(cachedChunk{id: id, size: int64(len(b))})
		c.used += int64(len(b))
	}
	victims := c.evictLocked()
	c.mu.Unlock()
	if err := c.delete(ctx, victims); err != nil {
		c.log.Warn("caching store: evict", "err", err)
	}
	return b, nil
}

func (c *CachingStore) forget(id ChunkID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.idx[id]; ok {
		c.used -= el.Value.(cachedChunk).size
		c.lru.Remove(el)
		delete(c.idx, id)
	}
}

// evictLocked drops the least recently used chunks from the index until the
// cache fits and returns them for deletion.
func (c *CachingStore) evictLocked() []ChunkID {
	var victims []ChunkID
	for c.used > c.max && c.lru.Len() > 0 {
		el := c.lru.Back()
		v := el.Value.(cachedChunk)
		c.lru.Remove(el)
		delete(c.idx, v.id)
		c.used -= v.size
		victims = append(victims, v.id)
	}
	c.st.Evicted += int64(len(victims))
	return victims
}

// delete removes evicted chunks from the local store. A chunk fetched again
// between its eviction and this call is deleted too; its next Get notices
// and refetches it.
func (c *CachingStore) delete(ctx context.Context, ids []ChunkID) error {
	if len(ids) == 0 {
		return nil
	}
	if err := c.local.DeleteChunks(ctx, ids); err != nil {
		return fmt.Errorf("caching store: evict %d chunks: %w", len(ids), err)
	}
	return nil
}

// Put stores data in the source (write-through); the cache fills on reads.
func (c *CachingStore) Put(ctx context.Context, id ChunkID, data []byte) error {
	return c.source.Put(ctx, id, data)
}

// Has reports whether the chunk is cached or present in the source.
func (c *CachingStore) Has(ctx context.Context, id ChunkID) (bool, error) {
	c.mu.Lock()
	_, ok := c.idx[id]
	c.mu.Unlock()
	if ok {
		return true, nil
	}
	return c.source.Has(ctx, id)
}

// Sync makes the source's writes durable.
func (c *CachingStore) Sync(ctx context.Context) error { return c.source.Sync(ctx) }

// Stats returns the cache's counters.
func (c *CachingStore) Stats() CachingStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.st
	st.UsedBytes, st.MaxBytes, st.Chunks = c.used, c.max, len(c.idx)
	return st
}
