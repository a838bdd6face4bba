package engine

import (
	"container/list"
	"context"
	"sync"
)

// ChunkCache is an LRU of decoded, verified chunks bounded in bytes. Loads
// of the same chunk by concurrent readers are coalesced into one. Cached
// slices are shared and must not be modified.
type ChunkCache struct {
	mu       sync.Mutex
	max      int64
	used     int64
	ll       *list.List // front = most recent; values are *cacheEntry
	entries  map[ChunkID]*list.Element
	inflight map[ChunkID]*loadCall
	hits     int64
	misses   int64
}

type cacheEntry struct {
	id   ChunkID
	data []byte
}

type loadCall struct {
	done chan struct{}
	data []byte
	err  error
}

// NewChunkCache returns a cache holding at most maxBytes of chunk data.
func NewChunkCache(maxBytes int64) *ChunkCache {
	return &ChunkCache{max: maxBytes, ll: list.New(), entries: map[ChunkID]*list.Element{}, inflight: map[ChunkID]*loadCall{}}
}

// Get returns the chunk from the cache, or loads it with load (once, however
// many callers ask at the same time) and caches it.
func (c *ChunkCache) Get(ctx context.Context, id ChunkID, load func(context.Context) ([]byte, error)) ([]byte, error) {
	c.mu.Lock()
	if el, ok := c.entries[id]; ok {
		c.ll.MoveToFront(el)
		c.hits++
		d := el.Value.(*cacheEntry).data
		c.mu.Unlock()
		return d, nil
	}
	if call, ok := c.inflight[id]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.data, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c.misses++
	call := &loadCall{done: make(chan struct{})}
	c.inflight[id] = call
	c.mu.Unlock()

	// The load runs detached from this caller's cancellation so that other
	// waiters still get the chunk if this caller goes away.
	call.data, call.err = load(context.WithoutCancel(ctx))
	c.mu.Lock()
	delete(c.inflight, id)
	if call.err == nil {
		c.addLocked(id, call.data)
	}
	c.mu.Unlock()
	close(call.done)
	return call.data, call.err
}

// Contains reports whether id is cached or being loaded.
func (c *ChunkCache) Contains(id ChunkID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.entries[id]
	_, loading := c.inflight[id]
	return ok || loading
}

func (c *ChunkCache) addLocked(id ChunkID, data []byte) {
	if int64(len(data)) > c.max {
		return
	}
	if _, ok := c.entries[id]; ok {
		return
	}
	c.entries[id] = c.ll.PushFront(&cacheEntry{id: id, data: data})
	c.used += int64(len(data))
	for c.used > c.max {
		el := c.ll.Back()
		e := el.Value.(*cacheEntry)
		c.ll.Remove(el)
		delete(c.entries, e.id)
		c.used -= int64(len(e.data))
	}
}

// CacheStats are a cache's counters.
type CacheStats struct {
	Hits, Misses int64
	Bytes, Max   int64
	Entries      int
}

// Stats returns the cache's counters.
func (c *ChunkCache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Hits: c.hits, Misses: c.misses, Bytes: c.used, Max: c.max, Entries: len(c.entries)}
}
