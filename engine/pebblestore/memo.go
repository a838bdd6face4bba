package pebblestore

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/cockroachdb/pebble/v2"
	"github.com/mosaicimg/mosaic/engine"
)

// The store is also the node's engine.StreamMemo: what it remembers of
// ingested streams lives beside the chunks, under
//
//	"s" | first chunk [32] | manifest root [32]  →  engine.EncodeStreamDigests
//
// so that the streams starting with a chunk are one prefix scan. An entry
// goes when its root chunk is deleted from this store (DeleteChunks: the
// content was collected), when an ingest finds its manifest gone, or, past
// MaxRememberedStreams entries, the least recently used one.
const prefixStream = 's'

// MaxRememberedStreams bounds the streams a store remembers. An entry costs
// ~5 KB per GiB of stream (two hash states every 64 MiB).
const MaxRememberedStreams = 4096

var _ engine.StreamMemo = (*Store)(nil)

// memoEntry is what the store keeps in memory of each remembered stream.
type memoEntry struct {
	first engine.ChunkID
	at    int64
}

func streamKey(first, root engine.ChunkID) []byte {
	k := make([]byte, 65)
	k[0] = prefixStream
	copy(k[1:], first[:])
	copy(k[33:], root[:])
	return k
}

// loadMemoIndex reads the remembered streams' keys and times.
func (s *Store) loadMemoIndex() error {
	s.memo = map[engine.ChunkID]memoEntry{}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixStream}, UpperBound: []byte{prefixStream + 1}})
	if err != nil {
		return fmt.Errorf("pebblestore: load stream memo: %w", err)
	}
	defer it.Close()
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 65 {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("pebblestore: load stream memo: %w", err)
		}
		var e memoEntry
		copy(e.first[:], k[1:33])
		if len(v) >= 20 {
			e.at = int64(binary.LittleEndian.Uint64(v[12:20]))
		}
		s.memo[engine.ChunkID(k[33:65])] = e
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("pebblestore: load stream memo: %w", err)
	}
	return nil
}

// StreamsStartingWith implements engine.StreamMemo.
func (s *Store) StreamsStartingWith(ctx context.Context, first engine.ChunkID, limit int) ([]engine.StreamDigests, error) {
	lower := streamKey(first, engine.ChunkID{})[:33]
	upper := slices.Clone(lower)
	for i := len(upper) - 1; i >= 0; i-- { // the prefix's successor
		upper[i]++
		if upper[i] != 0 {
			break
		}
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("pebblestore: remembered streams: %w", err)
	}
	defer it.Close()
	var out []engine.StreamDigests
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("pebblestore: remembered streams: %w", err)
		}
		d, err := engine.DecodeStreamDigests(v)
		if err != nil || len(it.Key()) != 65 || d.First != first || engine.ChunkID(it.Key()[33:]) != d.Root {
			s.log.Warn("pebblestore: skipping a damaged stream memo entry", "key", fmt.Sprintf("%x", it.Key()), "err", err)
			continue
		}
		out = append(out, d)
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("pebblestore: remembered streams: %w", err)
	}
	slices.SortFunc(out, func(a, b engine.StreamDigests) int { return cmp.Compare(b.RememberedAt, a.RememberedAt) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// RememberStream implements engine.StreamMemo. The entry is written
// without a sync: it is a cache, durable with the next flush.
func (s *Store) RememberStream(ctx context.Context, d engine.StreamDigests) error {
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	d.RememberedAt = s.now().UnixNano()
	key := streamKey(d.First, d.Root)
	if old, closer, err := s.db.Get(key); err == nil {
		prev, derr := engine.DecodeStreamDigests(old)
		closer.Close()
		if derr == nil {
			d = engine.MergeStreamDigests(prev, d)
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("pebblestore: remember stream %s: %w", d.Root, err)
	}
	if len(d.Hashes) == 0 {
		return nil // nothing to remember
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set(key, engine.EncodeStreamDigests(d), nil)
	var evicted []engine.ChunkID
	if _, ok := s.memo[d.Root]; !ok {
		for len(s.memo)-len(evicted) >= MaxRememberedStreams {
			victim, ok := s.oldestMemoLocked(evicted)
			if !ok {
				break
			}
			_ = b.Delete(streamKey(s.memo[victim].first, victim), nil)
			evicted = append(evicted, victim)
		}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("pebblestore: remember stream %s: %w", d.Root, translateWriteErr(err))
	}
	for _, v := range evicted {
		delete(s.memo, v)
	}
	s.memo[d.Root] = memoEntry{first: d.First, at: d.RememberedAt}
	return nil
}

// oldestMemoLocked returns the least recently remembered root not in skip.
func (s *Store) oldestMemoLocked(skip []engine.ChunkID) (engine.ChunkID, bool) {
	var (
		best  engine.ChunkID
		found bool
		at    int64
	)
	for root, e := range s.memo {
		if slices.Contains(skip, root) {
			continue
		}
		if !found || e.at < at {
			best, at, found = root, e.at, true
		}
	}
	return best, found
}

// ForgetStream implements engine.StreamMemo.
func (s *Store) ForgetStream(ctx context.Context, root engine.ChunkID) error {
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	e, ok := s.memo[root]
	if !ok {
		return nil
	}
	if err := s.db.Delete(streamKey(e.first, root), pebble.NoSync); err != nil {
		return fmt.Errorf("pebblestore: forget stream %s: %w", root, translateWriteErr(err))
	}
	delete(s.memo, root)
	return nil
}

// RememberedStreams returns how many streams the store remembers.
func (s *Store) RememberedStreams() int {
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	return len(s.memo)
}

// forgetDeletedLocked adds to b the deletion of the memo entries of the
// roots among ids, and returns those roots.
func (s *Store) forgetDeletedLocked(b *pebble.Batch, ids []engine.ChunkID) []engine.ChunkID {
	var gone []engine.ChunkID
	for _, id := range ids {
		if e, ok := s.memo[id]; ok {
			_ = b.Delete(streamKey(e.first, id), nil)
			gone = append(gone, id)
		}
	}
	return gone
}
