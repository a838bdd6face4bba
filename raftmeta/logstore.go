package raftmeta

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// LogStore is a raft.LogStore and raft.StableStore on Pebble. Every
// StoreLogs and Set is committed with a synced WAL write before it returns.
type LogStore struct {
	db *pebble.DB

	mu          sync.Mutex
	first, last uint64 // cached bounds; 0 when empty
}

var (
	_ raft.LogStore          = (*LogStore)(nil)
	_ raft.StableStore       = (*LogStore)(nil)
	_ raft.MonotonicLogStore = (*LogStore)(nil)
)

const (
	prefixLog    = 'l'
	prefixStable = 's'
)

func logKey(i uint64) []byte {
	k := make([]byte, 9)
	k[0] = prefixLog
	binary.BigEndian.PutUint64(k[1:], i)
	return k
}

// OpenLogStore opens (creating) a log store in dir. fs may be nil.
func OpenLogStore(dir string, fs vfs.FS) (*LogStore, error) {
	opts := &pebble.Options{FS: fs, MemTableSize: 16 << 20}
	opts.EnsureDefaults()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: open log store %s: %w", dir, err)
	}
	s := &LogStore{db: db}
	if err := s.loadBounds(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the store.
func (s *LogStore) Close() error { return s.db.Close() }

// IsMonotonic implements raft.MonotonicLogStore: after a snapshot restore
// raft deletes all older logs instead of leaving a gap.
func (s *LogStore) IsMonotonic() bool { return true }

func (s *LogStore) loadBounds() error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixLog}, UpperBound: []byte{prefixLog + 1}})
	if err != nil {
		return fmt.Errorf("raftmeta: log bounds: %w", err)
	}
	defer it.Close()
	s.first, s.last = 0, 0
	if it.First() {
		s.first = binary.BigEndian.Uint64(it.Key()[1:])
	}
	if it.Last() {
		s.last = binary.BigEndian.Uint64(it.Key()[1:])
	}
	return it.Error()
}

// FirstIndex implements raft.LogStore.
func (s *LogStore) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, nil
}

// LastIndex implements raft.LogStore.
func (s *LogStore) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, nil
}

// GetLog implements raft.LogStore.
func (s *LogStore) GetLog(index uint64, out *raft.Log) error {
	v, closer, err := s.db.Get(logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return fmt.Errorf("raftmeta: get log %d: %w", index, err)
	}
	defer closer.Close()
	return decodeLog(v, out)
}

// StoreLog implements raft.LogStore.
func (s *LogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs implements raft.LogStore. The batch is synced before returning.
func (s *LogStore) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	var buf []byte
	for _, l := range logs {
		buf = encodeLog(buf[:0], l)
		if err := b.Set(logKey(l.Index), buf, nil); err != nil {
			return fmt.Errorf("raftmeta: store log %d: %w", l.Index, err)
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftmeta: store logs: %w", err)
	}
	s.mu.Lock()
	if s.first == 0 || logs[0].Index < s.first {
		s.first = logs[0].Index
	}
	if last := logs[len(logs)-1].Index; last > s.last {
		s.last = last
	}
	s.mu.Unlock()
	return nil
}

// DeleteRange implements raft.LogStore (inclusive bounds).
func (s *LogStore) DeleteRange(min, max uint64) error {
	if err := s.db.DeleteRange(logKey(min), logKey(max+1), pebble.Sync); err != nil {
		return fmt.Errorf("raftmeta: delete logs %d-%d: %w", min, max, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadBounds()
}

func stableKey(k []byte) []byte { return append([]byte{prefixStable}, k...) }

// Set implements raft.StableStore.
func (s *LogStore) Set(key, val []byte) error {
	if err := s.db.Set(stableKey(key), val, pebble.Sync); err != nil {
		return fmt.Errorf("raftmeta: set %s: %w", key, err)
	}
	return nil
}

// Get implements raft.StableStore. A missing key is an error, as raft expects.
func (s *LogStore) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, errors.New("not found")
	}
	if err != nil {
		return nil, fmt.Errorf("raftmeta: get %s: %w", key, err)
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// SetUint64 implements raft.StableStore.
func (s *LogStore) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 implements raft.StableStore; a missing key reads as 0.
func (s *LogStore) GetUint64(key []byte) (uint64, error) {
	v, closer, err := s.db.Get(stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("raftmeta: get %s: %w", key, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("raftmeta: get %s: %d bytes, want 8", key, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// Log encoding: version byte 1, then index, term (uvarint), type byte,
// appended-at (varint Unix nanos), len+data, len+extensions.
func encodeLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	dst = append(dst, byte(l.Type))
	var at int64
	if !l.AppendedAt.IsZero() {
		at = l.AppendedAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, at)
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	return dst
}

func decodeLog(b []byte, l *raft.Log) error {
	bad := func(what string) error { return fmt.Errorf("raftmeta: decode log: bad %s", what) }
	if len(b) == 0 || b[0] != 1 {
		return bad("version")
	}
	b = b[1:]
	var n int
	if l.Index, n = binary.Uvarint(b); n <= 0 {
		return bad("index")
	}
	b = b[n:]
	if l.Term, n = binary.Uvarint(b); n <= 0 {
		return bad("term")
	}
	b = b[n:]
	if len(b) == 0 {
		return bad("type")
	}
	l.Type = raft.LogType(b[0])
	b = b[1:]
	at, n := binary.Varint(b)
	if n <= 0 {
		return bad("time")
	}
	b = b[n:]
	l.AppendedAt = time.Time{}
	if at != 0 {
		l.AppendedAt = time.Unix(0, at)
	}
	dl, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < dl {
		return bad("data")
	}
	l.Data = append([]byte(nil), b[n:n+int(dl)]...)
	b = b[n+int(dl):]
	el, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < el {
		return bad("extensions")
	}
	l.Extensions = nil
	if el > 0 {
		l.Extensions = append([]byte(nil), b[n:n+int(el)]...)
	}
	return nil
}
