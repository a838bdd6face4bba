package engine

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"sync/atomic"
)

// maxKnownCandidates bounds the remembered streams an ingest follows at
// once, the most recently used first (each holds one manifest page: up to
// 1.4 MiB, 0.6 MiB for a 1 GiB image).
const maxKnownCandidates = 8

// hashFeed hands an ingest's bytes to its whole-stream hashers, in order.
// Without a StreamMemo it forwards every block as it is read. With one,
// it first follows remembered streams that start with the same chunk and
// holds the blocks back instead: while the upload's chunks are a
// remembered stream's chunks, their bytes need no hashing (see StreamMemo).
// It decides chunk by chunk, in order, once the chunk's worker is done
// with it (the chunk is named and stored). When the chunks stop matching,
// the hashers resume from the remembered state at the last checkpoint,
// hash the bytes since it read back from the store, then the held blocks
// and everything after. When they match to the end, the remembered
// digests are the result.
type hashFeed struct {
	g       *Ingester
	hashers []*streamHasher
	events  chan feedEvent
	every   int64 // the checkpoint interval

	// matching is true while the feed follows remembered streams; the
	// reader sends chunk events only while it is set. Only the feed
	// clears it, once.
	matching atomic.Bool
	// aborted is set by the reader when the ingest fails, so the feed
	// skips its final catch-up.
	aborted atomic.Bool

	// Owned by the feed goroutine.
	cands   []*candidate
	k       int            // chunks decided (all matched so far)
	decided int64          // their bytes: the stream's bytes [0, decided) match
	refs    []ChunkRef     // matched chunks since the last checkpoint before decided
	held    []heldBlock    // blocks not yet hashed nor wholly decided
	known   *StreamDigests // set when the stream matched a remembered one to the end
	rbFree  chan *block    // buffers for bytes read back from the store
}

// feedEvent is a block of the stream (b, at offset off; the feed holds a
// ref) or, after the block holding its last byte, a chunk (c).
type feedEvent struct {
	b   *block
	off int64
	c   *feedChunk
}

// feedChunk is a chunk sent to the workers; done closes once its worker
// has named and stored it.
type feedChunk struct {
	ref  *ChunkRef
	done chan struct{}
}

type heldBlock struct {
	b   *block
	off int64
}

func newHashFeed(g *Ingester, hashers []*streamHasher, remembered bool) *hashFeed {
	f := &hashFeed{g: g, hashers: hashers, events: make(chan feedEvent, 4*g.cfg.BlocksInFlight), every: g.cfg.CheckpointEvery}
	f.matching.Store(remembered)
	return f
}

// wantChunks reports whether the reader must send chunk events.
func (f *hashFeed) wantChunks() bool { return f.matching.Load() }

// run consumes the events until the reader closes them, then finishes
// (catches up or takes remembered digests) and closes the hashers' inputs.
func (f *hashFeed) run(ctx context.Context) error {
	defer func() {
		for _, h := range f.hashers {
			close(h.in)
		}
	}()
	for ev := range f.events {
		if ev.b != nil {
			if f.matching.Load() {
				f.held = append(f.held, heldBlock{ev.b, ev.off})
				f.releaseDecided()
			} else {
				f.forward(ev.b, 0)
			}
			continue
		}
		if !f.matching.Load() {
			continue
		}
		select {
		case <-ev.c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if err := f.decide(ctx, ev.c.ref); err != nil {
			return err
		}
	}
	if f.aborted.Load() || !f.matching.Load() {
		return nil
	}
	return f.finish(ctx)
}

// decide compares chunk f.k of the upload with the candidates.
func (f *hashFeed) decide(ctx context.Context, ref *ChunkRef) error {
	if f.k == 0 {
		f.cands = f.lookup(ctx, ref.ID)
	}
	var last *candidate
	kept := f.cands[:0]
	for _, c := range f.cands {
		if c.matches(ctx, f.k, ref) {
			kept = append(kept, c)
		} else if last == nil {
			last = c
		}
	}
	f.cands = kept
	if len(kept) == 0 {
		return f.resume(ctx, last)
	}
	f.k++
	f.decided = ref.Offset + int64(ref.Size)
	// Keep the refs a resume may have to read back: those past the last
	// checkpoint at or before decided.
	cp := f.decided / f.every * f.every
	if n := len(f.refs); n > 0 && f.refs[n-1].Offset+int64(f.refs[n-1].Size) <= cp {
		f.refs = f.refs[:0]
	}
	if ref.Offset+int64(ref.Size) > cp {
		f.refs = append(f.refs, *ref)
	}
	f.releaseDecided()
	return nil
}

// releaseDecided lets go of held blocks whose bytes all matched.
func (f *hashFeed) releaseDecided() {
	n := 0
	for n < len(f.held) && f.held[n].off+int64(len(f.held[n].b.buf)) <= f.decided {
		f.held[n].b.release()
		n++
	}
	if n > 0 {
		f.held = append(f.held[:0], f.held[n:]...)
	}
}

// finish runs once every chunk matched: the stream is a remembered one
// if a candidate ends here too; otherwise it is a prefix of the
// candidates, and the hashers catch up from the last checkpoint.
func (f *hashFeed) finish(ctx context.Context) error {
	for _, c := range f.cands {
		if c.chunks == f.k && c.d.Size == f.decided {
			f.known = &c.d
			return nil
		}
	}
	var c *candidate
	if len(f.cands) > 0 {
		c = f.cands[0]
	}
	return f.resume(ctx, c)
}

// resume starts hashing at byte f.decided, the end of the matched chunks:
// from c's checkpoint at or before it (c followed the stream that far),
// then the bytes since the checkpoint, read back from the store, then
// the held blocks from f.decided on. With no candidate (nothing
// remembered starts like this stream), hashing starts at 0 with the held
// blocks.
func (f *hashFeed) resume(ctx context.Context, c *candidate) error {
	f.matching.Store(false)
	if c != nil {
		from := f.decided / f.every * f.every
		if from > 0 {
			i := int(from/f.every) - 1
			for _, h := range f.hashers {
				states := c.d.Hashes[h.name].States
				h.in <- hashPiece{restore: &hashRestore{state: states[i], pos: from, states: states[:i+1]}}
			}
		}
		if err := f.readBack(ctx, from, f.decided); err != nil {
			return err
		}
	}
	for _, hb := range f.held {
		f.forward(hb.b, max(0, f.decided-hb.off))
	}
	f.held, f.refs, f.cands = nil, nil, nil
	return nil
}

// forward hands b's bytes from index from on to every hasher and drops
// the feed's ref.
func (f *hashFeed) forward(b *block, from int64) {
	b.refs.Add(int32(len(f.hashers)))
	for _, h := range f.hashers {
		h.in <- hashPiece{data: b.buf[from:], b: b}
	}
	b.release()
}

// readBack hashes the stream's bytes [from, to) from the store: the
// matched chunks since the checkpoint, verified by the store's Get.
func (f *hashFeed) readBack(ctx context.Context, from, to int64) error {
	if f.rbFree == nil {
		f.rbFree = make(chan *block, 4)
		for range cap(f.rbFree) {
			f.rbFree <- &block{free: f.rbFree}
		}
	}
	for _, r := range f.refs {
		end := r.Offset + int64(r.Size)
		if end <= from || r.Offset >= to {
			continue
		}
		lo := max(from, r.Offset) - r.Offset
		if r.ID.IsZero() {
			for left := int64(r.Size) - lo; left > 0; {
				k := min(left, int64(len(zeroBuf)))
				for _, h := range f.hashers {
					h.in <- hashPiece{data: zeroBuf[:k]}
				}
				left -= k
			}
			continue
		}
		var b *block
		select {
		case b = <-f.rbFree:
		case <-ctx.Done():
			return ctx.Err()
		}
		data, err := f.g.store.Get(ctx, r.ID, b.buf[:0])
		if err != nil {
			b.free <- b
			return fmt.Errorf("ingest: read back chunk %s at offset %d to resume hashing: %w", r.ID, r.Offset, err)
		}
		b.buf = data
		b.refs.Store(int32(len(f.hashers)))
		for _, h := range f.hashers {
			h.in <- hashPiece{data: data[lo:], b: b}
		}
	}
	return nil
}

// lookup returns the remembered streams that start with first and have
// every digest this ingest needs, with their manifests readable.
func (f *hashFeed) lookup(ctx context.Context, first ChunkID) []*candidate {
	memo := f.g.cfg.Memo
	ds, err := memo.StreamsStartingWith(ctx, first, maxKnownCandidates)
	if err != nil {
		f.g.log.Warn("ingest: remembered streams unavailable; hashing the whole upload", "err", err)
		return nil
	}
	names := make([]string, len(f.hashers))
	for i, h := range f.hashers {
		names[i] = h.name
	}
	var out []*candidate
	for _, d := range ds {
		if !d.covers(names, f.every) || !statesRestore(d, names) {
			continue
		}
		c, err := openCandidate(ctx, f.g.store, d)
		if err != nil {
			if errors.Is(err, ErrNotFound) {
				// The content is gone (collected): forget it.
				if err := memo.ForgetStream(ctx, d.Root); err != nil {
					f.g.log.Warn("ingest: forget remembered stream", "root", d.Root, "err", err)
				}
			} else {
				f.g.log.Warn("ingest: open remembered stream", "root", d.Root, "err", err)
			}
			continue
		}
		out = append(out, c)
	}
	return out
}

// statesRestore reports whether every checkpoint of d for the given
// algorithms restores, and every digest has its algorithm's size, so a
// resume from any of them cannot fail.
func statesRestore(d StreamDigests, names []string) bool {
	for _, n := range names {
		h, err := newNamedHash(n)
		if err != nil || len(d.Hashes[n].Sum) != h.Size() {
			return false
		}
		for _, st := range d.Hashes[n].States {
			if restoreState(h, st) != nil {
				return false
			}
		}
	}
	return true
}

// candidate is a remembered stream being compared with the upload, its
// manifest read one page at a time.
type candidate struct {
	d      StreamDigests
	store  ChunkStore
	pages  []ChunkID
	chunks int
	page   []byte // entries of page pageNo
	pageNo int
}

func openCandidate(ctx context.Context, cs ChunkStore, d StreamDigests) (*candidate, error) {
	b, err := cs.Get(ctx, d.Root, nil)
	if err != nil {
		return nil, fmt.Errorf("load manifest root %s: %w", d.Root, err)
	}
	r, err := decodeManifestRoot(d.Root, b)
	if err != nil {
		return nil, err
	}
	if r.size != d.Size {
		return nil, fmt.Errorf("remembered stream %s: %w: %d bytes, manifest says %d", d.Root, ErrCorrupt, d.Size, r.size)
	}
	return &candidate{d: d, store: cs, pages: r.pages, chunks: int(r.chunks), pageNo: -1}, nil
}

// matches reports whether chunk k of the candidate is ref (same ID and
// size; the offsets then agree, since every chunk before matched). A page
// that cannot be read counts as a mismatch.
func (c *candidate) matches(ctx context.Context, k int, ref *ChunkRef) bool {
	if k >= c.chunks {
		return false
	}
	p := k / manifestPageEntries
	if p != c.pageNo {
		b, err := c.store.Get(ctx, c.pages[p], c.page)
		if err != nil || len(b) < 8 || [4]byte(b[:4]) != pageMagic {
			return false
		}
		c.page, c.pageNo = b, p
	}
	e := 8 + (k%manifestPageEntries)*manifestEntryLen
	if e+manifestEntryLen > len(c.page) {
		return false
	}
	return ChunkID(c.page[e:e+32]) == ref.ID && binary.LittleEndian.Uint32(c.page[e+32:]) == ref.Size
}

// streamHasher is one whole-stream hash on its own goroutine. With
// checkpoints on (every > 0), it saves its state at every `every` bytes.
type streamHasher struct {
	name  string
	h     hash.Hash
	in    chan hashPiece
	every int64

	// Owned by run until in is closed.
	pos    int64
	hashed int64
	states [][]byte
	err    error
}

// hashPiece is bytes to hash (released through b, if set, afterwards),
// after restoring a saved state if restore is set.
type hashPiece struct {
	data    []byte
	b       *block
	restore *hashRestore
}

// hashRestore sets a hasher to a remembered state at pos (a checkpoint),
// with the checkpoints before it.
type hashRestore struct {
	state  []byte
	pos    int64
	states [][]byte
}

func (s *streamHasher) run() {
	for p := range s.in {
		if p.restore != nil && s.err == nil {
			if err := restoreState(s.h, p.restore.state); err != nil {
				s.err = fmt.Errorf("ingest: resume %s: %w", s.name, err)
			}
			s.pos = p.restore.pos
			s.states = append(s.states[:0], p.restore.states...)
		}
		data := p.data
		s.hashed += int64(len(data))
		for s.every > 0 && len(data) > 0 {
			next := (s.pos/s.every + 1) * s.every
			n := int(min(int64(len(data)), next-s.pos))
			s.h.Write(data[:n])
			s.pos += int64(n)
			data = data[n:]
			if s.pos == next && s.err == nil {
				st, err := marshalState(s.h)
				if err != nil {
					s.err = fmt.Errorf("ingest: checkpoint %s: %w", s.name, err)
				}
				s.states = append(s.states, st)
			}
		}
		if len(data) > 0 {
			s.h.Write(data)
			s.pos += int64(len(data))
		}
		if p.b != nil {
			p.b.release()
		}
	}
}

// logger returns l, or a logger that discards.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
