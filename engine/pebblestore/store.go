package pebblestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/mosaicimg/mosaic/engine"
)

// Config configures a Store.
type Config struct {
	// Dir is the Pebble directory.
	Dir string
	// FS overrides the file system (tests use vfs.NewCrashableMem or errorfs).
	FS vfs.FS
	// MemTableSize is the size of each memtable; 0 means
	// DefaultMemTableSize.
	MemTableSize uint64
	// BlockCacheSize is the memory Pebble keeps for sstable blocks (index,
	// filter and data blocks: the lookup path of every Get) and blob value
	// blocks; 0 means 64 MiB. Pebble charges its memtables to the same
	// cache, so the cache Pebble is given is this plus two memtables.
	BlockCacheSize int64
	// MaxBlobReferenceDepth is Pebble's limit on overlapping blob files one
	// sstable may reference before a compaction rewrites the values; 0
	// means 1<<16 (chunk keys are random, so every flush overlaps every
	// earlier one: a small limit makes compactions rewrite chunk bodies).
	MaxBlobReferenceDepth int
	// WAL keeps Pebble's write-ahead log and makes Sync a synced WAL
	// write. The default (false) runs without a WAL and makes Sync a
	// memtable flush: every chunk is then written once, to a blob file,
	// instead of twice (docs/storage.md has the measurements).
	WAL    bool
	Logger *slog.Logger
	// Now may be replaced in tests.
	Now func() time.Time
}

// DefaultMemTableSize is the default memtable size. Sync flushes the
// memtable, so it bounds the flush an upload waits for at its end; 32 MiB
// keeps that under ~50 ms here while flushes stay large (docs/storage.md).
const DefaultMemTableSize = 32 << 20

// Store is a Pebble-backed chunk store.
type Store struct {
	db  *pebble.DB
	wal bool

	// Without a WAL, write errors surface in flushes, which Pebble retries
	// in the background and which db.Flush waits for forever. So the
	// store watches flush results: failing holds the latest flush error
	// (nil after a flush succeeds), and failed is closed and replaced on
	// each failure to wake waiting Syncs.
	failing atomic.Pointer[error]
	mu      sync.Mutex
	failed  chan struct{}

	log *slog.Logger
	now func() time.Time
	enc sync.Pool // *[]byte encode buffers

	// The remembered streams (memo.go): root → first chunk and time.
	memoMu sync.Mutex
	memo   map[engine.ChunkID]memoEntry
}

var _ engine.GCStore = (*Store)(nil)

// Keys. Each chunk has two: its encoding under "c"+ID, which Pebble
// separates into blob files, and a 16-byte record under "m"+ID (size,
// stored size, first-written time) that stays in the sstables. Has and
// ListChunks read only the "m" keys, so dedup checks and GC never fetch
// chunk bodies from blob files.
const (
	prefixChunk = 'c'
	prefixMeta  = 'm'
	metaLen     = 16
)

func chunkKey(id engine.ChunkID) []byte { return key(prefixChunk, id) }

func metaKey(id engine.ChunkID) []byte { return key(prefixMeta, id) }

func key(prefix byte, id engine.ChunkID) []byte {
	k := make([]byte, 33)
	k[0] = prefix
	copy(k[1:], id[:])
	return k
}

func encodeMeta(dst []byte, h engine.ChunkHeader, stored int) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, h.Size)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(stored))
	return binary.LittleEndian.AppendUint64(dst, uint64(h.WrittenAt))
}

func (c Config) blobDepth() int {
	if c.MaxBlobReferenceDepth > 0 {
		return c.MaxBlobReferenceDepth
	}
	return 1 << 16
}

// Open opens (creating if needed) a store in cfg.Dir.
func Open(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MemTableSize == 0 {
		cfg.MemTableSize = DefaultMemTableSize
	}
	if cfg.BlockCacheSize == 0 {
		cfg.BlockCacheSize = 64 << 20
	}
	opts := &pebble.Options{
		FS:                 cfg.FS,
		FormatMajorVersion: pebble.FormatValueSeparation,
		DisableWAL:         !cfg.WAL,
		MemTableSize:       cfg.MemTableSize,
		// Pebble reserves each live memtable's size out of the block
		// cache. With 64 MiB memtables its 8 MiB default held nothing: every
		// Get read its index and filter blocks from the file again, which
		// cost as much CPU as reading the chunk (docs/storage.md).
		CacheSize:                   cfg.BlockCacheSize + 2*int64(cfg.MemTableSize),
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		L0StopWritesThreshold:       32,
		LBaseMaxBytes:               512 << 20,
		Logger:                      pebbleLogger{cfg.Logger},
	}
	opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           1024,
			MaxBlobReferenceDepth: cfg.blobDepth(),
			RewriteMinimumAge:     time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
	// Bloom filters on every level, L0 included: chunk keys are random, so
	// every L0 file overlaps every lookup, and most lookups during a first
	// upload (Has of a new chunk) are misses a filter answers without
	// reading an index block.
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// Pebble sizes sstables by the values they refer to, blob values
	// included: with the defaults (2 MiB at L0, doubling per level, and
	// flushes split every 4 MiB) every flush of chunk bodies made dozens of
	// sstables of a few KiB of keys each, and compactions churned through
	// ~250 files per GiB ingested, creating, syncing and deleting them
	// (docs/storage.md). The keys of 1 GiB of chunks fit in ~2 MiB.
	opts.FlushSplitBytes = 1 << 40
	for i := range opts.TargetFileSizes {
		opts.TargetFileSizes[i] = 256 << 20
	}
	// No Pebble block compression: chunk bodies are zstd frames already or
	// were stored raw because zstd could not shrink them, and the keys are
	// random hashes; snappy would only spend CPU on every flush and read.
	opts.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionNone })
	s := &Store{wal: cfg.WAL, log: cfg.Logger, now: cfg.Now, failed: make(chan struct{})}
	opts.EventListener = &pebble.EventListener{FlushEnd: s.flushEnd}
	opts.EnsureDefaults()
	db, err := pebble.Open(cfg.Dir, opts)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: open %s: %w", cfg.Dir, err)
	}
	s.db = db
	s.enc.New = func() any { b := make([]byte, 0, 320<<10); return &b }
	if err := s.loadMemoIndex(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Close flushes the memtables (without a WAL, Pebble would drop them:
// nothing would refer to those chunks, but a clean shutdown keeps them for
// dedup) and closes the database.
func (s *Store) Close() error {
	var flushErr error
	if !s.wal && s.failing.Load() == nil {
		// Bounded: a flush that keeps failing must not hang shutdown.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		flushErr = s.flush(ctx)
		cancel()
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("pebblestore: close: %w", err)
	}
	if flushErr != nil {
		return fmt.Errorf("pebblestore: close: flush: %w", flushErr)
	}
	return nil
}

// DB exposes the underlying database for metrics.
func (s *Store) DB() *pebble.DB { return s.db }

// readErr translates a Pebble read error. Pebble's own checksums catch a
// damaged block or blob file before our BLAKE3 check would; that is the same
// fault, so it becomes engine.ErrCorrupt naming the chunk.
func readErr(op string, id engine.ChunkID, err error) error {
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		return fmt.Errorf("pebblestore: %s %s: %w", op, id, engine.ErrNotFound)
	case errors.Is(err, pebble.ErrCorruption):
		return fmt.Errorf("pebblestore: %s: chunk %s: %w: %v", op, id, engine.ErrCorrupt, err)
	}
	return fmt.Errorf("pebblestore: %s %s: %w", op, id, err)
}

// Get implements engine.ChunkStore.
func (s *Store) Get(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	v, closer, err := s.db.Get(chunkKey(id))
	if err != nil {
		return nil, readErr("get", id, err)
	}
	defer closer.Close()
	out, err := engine.DecodeChunk(id, v, buf)
	if err != nil {
		return nil, fmt.Errorf("pebblestore: get: %w", err)
	}
	return out, nil
}

// GetEncoded returns the stored encoding of a chunk (for transfer to
// another node); the caller verifies it when decoding.
func (s *Store) GetEncoded(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	v, closer, err := s.db.Get(chunkKey(id))
	if err != nil {
		return nil, readErr("get", id, err)
	}
	defer closer.Close()
	return append(buf[:0], v...), nil
}

// PutEncoded stores an already encoded chunk as is (a transfer from
// another node, or a test planting damage). Like Put it does not sync. The
// header is checked; the payload is verified when the chunk is read.
func (s *Store) PutEncoded(ctx context.Context, id engine.ChunkID, enc []byte) error {
	h, err := engine.ParseChunkHeader(enc)
	if err != nil {
		return fmt.Errorf("pebblestore: put %s: %w", id, err)
	}
	if err := s.writeBlocked(ctx); err != nil {
		return fmt.Errorf("pebblestore: put %s: %w", id, err)
	}
	return s.write(id, h, enc)
}

// Put implements engine.ChunkStore.
func (s *Store) Put(ctx context.Context, id engine.ChunkID, data []byte) error {
	if err := s.writeBlocked(ctx); err != nil {
		return fmt.Errorf("pebblestore: put %s: %w", id, err)
	}
	bp := s.enc.Get().(*[]byte)
	enc := engine.EncodeChunk((*bp)[:0], data, s.now())
	h, _ := engine.ParseChunkHeader(enc)
	err := s.write(id, h, enc)
	*bp = enc[:0]
	s.enc.Put(bp)
	return err
}

// write commits the chunk and its metadata record in one batch.
func (s *Store) write(id engine.ChunkID, h engine.ChunkHeader, enc []byte) error {
	b := s.db.NewBatch()
	defer b.Close()
	var meta [metaLen]byte
	_ = b.Set(chunkKey(id), enc, nil)
	_ = b.Set(metaKey(id), encodeMeta(meta[:0], h, len(enc)), nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("pebblestore: put %s: %w", id, translateWriteErr(err))
	}
	return nil
}

// Has implements engine.ChunkStore. It reads the metadata record only.
func (s *Store) Has(ctx context.Context, id engine.ChunkID) (bool, error) {
	_, closer, err := s.db.Get(metaKey(id))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, readErr("has", id, err)
	}
	closer.Close()
	return true, nil
}

// flushEnd records the outcome of every flush. Pebble reports a flush of
// nothing as the unexported "pebble: empty table" error; that is success.
func (s *Store) flushEnd(info pebble.FlushInfo) {
	if info.Err == nil || info.Err.Error() == "pebble: empty table" {
		s.failing.Store(nil)
		return
	}
	err := info.Err
	s.failing.Store(&err)
	s.log.Error("chunk store flush failed; writes fail until a flush succeeds", "err", err)
	s.mu.Lock()
	close(s.failed)
	s.failed = make(chan struct{})
	s.mu.Unlock()
}

// writeBlocked returns the pending flush error, if any: new writes are
// refused rather than queued in memtables that cannot be flushed. While a
// flush error is pending it first retries the flush, so the first write
// after the disk has room again succeeds.
func (s *Store) writeBlocked(ctx context.Context) error {
	if s.failing.Load() == nil {
		return nil
	}
	if err := s.flush(ctx); err == nil {
		return nil
	}
	return s.flushErr()
}

func (s *Store) flushErr() error {
	if p := s.failing.Load(); p != nil {
		return translateWriteErr(*p)
	}
	return errors.New("flush failed")
}

// Sync implements engine.ChunkStore. With a WAL it is one synced WAL
// write, which makes every earlier write durable (the WAL is sequential).
// Without one it flushes the memtables: Pebble writes them to sstables and
// blob files, syncs those and records them in its synced MANIFEST, which
// makes every write that reached a memtable before the call durable.
func (s *Store) Sync(ctx context.Context) error {
	if s.wal {
		if err := s.db.LogData(nil, pebble.Sync); err != nil {
			return fmt.Errorf("pebblestore: sync: %w", translateWriteErr(err))
		}
		return nil
	}
	if err := s.flush(ctx); err != nil {
		return fmt.Errorf("pebblestore: sync: %w", err)
	}
	return nil
}

// flush flushes the memtables and waits for the result.
func (s *Store) flush(ctx context.Context) error {
	s.mu.Lock()
	failed := s.failed
	s.mu.Unlock()
	flushed, err := s.db.AsyncFlush()
	if err != nil {
		return translateWriteErr(err)
	}
	select {
	case <-flushed:
		return nil
	case <-failed:
		// A flush failed after this call began; Pebble will retry it, but
		// the caller's data is not durable now.
		return s.flushErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ListChunks implements engine.GCStore. It scans the metadata records,
// which live in the sstables: no chunk body is read.
func (s *Store) ListChunks(ctx context.Context) iter.Seq2[engine.ChunkInfo, error] {
	return func(yield func(engine.ChunkInfo, error) bool) {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixMeta}, UpperBound: []byte{prefixMeta + 1}})
		if err != nil {
			yield(engine.ChunkInfo{}, fmt.Errorf("pebblestore: list: %w", err))
			return
		}
		defer it.Close()
		for it.First(); it.Valid(); it.Next() {
			if ctx.Err() != nil {
				yield(engine.ChunkInfo{}, ctx.Err())
				return
			}
			var info engine.ChunkInfo
			copy(info.ID[:], it.Key()[1:])
			v, err := it.ValueAndErr()
			if err == nil && len(v) != metaLen {
				err = fmt.Errorf("%w: metadata record of %d bytes", engine.ErrCorrupt, len(v))
			}
			if err != nil {
				if !yield(info, fmt.Errorf("pebblestore: list %s: %w", info.ID, err)) {
					return
				}
				continue
			}
			info.Size = binary.LittleEndian.Uint32(v)
			info.StoredSize = binary.LittleEndian.Uint32(v[4:])
			info.WrittenAt = int64(binary.LittleEndian.Uint64(v[8:]))
			if !yield(info, nil) {
				return
			}
		}
		if err := it.Error(); err != nil {
			yield(engine.ChunkInfo{}, fmt.Errorf("pebblestore: list: %w", err))
		}
	}
}

// syncOpt is pebble.Sync with a WAL; without one Pebble refuses it.
func (s *Store) syncOpt() *pebble.WriteOptions {
	if s.wal {
		return pebble.Sync
	}
	return pebble.NoSync
}

// DeleteChunks implements engine.GCStore. A deleted manifest root takes
// what is remembered of its stream with it.
func (s *Store) DeleteChunks(ctx context.Context, ids []engine.ChunkID) error {
	s.memoMu.Lock()
	defer s.memoMu.Unlock()
	b := s.db.NewBatch()
	defer b.Close()
	forgotten := s.forgetDeletedLocked(b, ids)
	for _, id := range ids {
		if err := b.Delete(metaKey(id), nil); err != nil {
			return fmt.Errorf("pebblestore: delete %s: %w", id, err)
		}
		if err := b.Delete(chunkKey(id), nil); err != nil {
			return fmt.Errorf("pebblestore: delete %s: %w", id, err)
		}
	}
	if err := b.Commit(s.syncOpt()); err != nil {
		return fmt.Errorf("pebblestore: delete: %w", translateWriteErr(err))
	}
	for _, root := range forgotten {
		delete(s.memo, root)
	}
	// Without a WAL the deletes are durable at the next flush; a chunk that
	// comes back after a crash is garbage again and the next GC takes it.
	// The collector syncs once at the end of a sweep (Reclaim).
	return nil
}

// Reclaim makes the deletes of a sweep durable and compacts the chunk key
// range, so that the tombstones meet the keys they delete and blob files
// whose every value is gone are removed now rather than whenever
// compactions get there. Blob files still partly live are rewritten by
// Pebble once their garbage passes TargetGarbageRatio.
func (s *Store) Reclaim(ctx context.Context) error {
	if err := s.Sync(ctx); err != nil {
		return fmt.Errorf("pebblestore: reclaim: %w", err)
	}
	if err := s.db.Compact(ctx, []byte{prefixChunk}, []byte{prefixMeta + 1}, true); err != nil {
		return fmt.Errorf("pebblestore: reclaim: compact: %w", translateWriteErr(err))
	}
	return nil
}

func translateWriteErr(err error) error {
	if isNoSpace(err) {
		return fmt.Errorf("%w: %v", engine.ErrNoSpace, err)
	}
	return err
}

type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
	panic(fmt.Sprintf(format, args...))
}
