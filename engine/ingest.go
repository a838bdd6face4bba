package engine

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mosaicimg/mosaic/chunker"
	"golang.org/x/sync/errgroup"
)

// IngestConfig configures an Ingester.
type IngestConfig struct {
	// Chunking sets chunk sizes.
	Chunking chunker.Params
	// Workers is the number of goroutines that hash, compress and store
	// chunks; 0 means GOMAXPROCS.
	Workers int
	// BlockSize is the unit the stream is read in and handed to the hash
	// goroutines; 0 means 4 MiB.
	BlockSize int
	// BlocksInFlight bounds the memory an ingest uses (BlockSize each);
	// 0 means 2×Workers+4.
	BlocksInFlight int
	// Memo, when set, remembers the whole-stream digests of ingested
	// content, so that uploads of known content skip hashing it (see
	// StreamMemo). nil hashes every upload in full.
	Memo StreamMemo
	// CheckpointEvery is the interval of the hash states remembered with
	// a stream; 0 means DefaultCheckpointEvery.
	CheckpointEvery int64
	// Logger receives warnings the ingest survives (a memo it cannot
	// read or write); nil discards them.
	Logger *slog.Logger
}

// DefaultIngestConfig returns the defaults.
func DefaultIngestConfig() IngestConfig {
	return IngestConfig{Chunking: chunker.DefaultParams}
}

// Validate checks the configuration and fills zero fields with defaults.
func (c *IngestConfig) Validate() error {
	if c.Chunking == (chunker.Params{}) {
		c.Chunking = chunker.DefaultParams
	}
	if err := c.Chunking.Validate(); err != nil {
		return fmt.Errorf("ingest config: %w", err)
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.BlockSize <= 0 {
		c.BlockSize = 4 << 20
	}
	if c.BlockSize < c.Chunking.Max {
		return fmt.Errorf("ingest config: block size %d below max chunk %d", c.BlockSize, c.Chunking.Max)
	}
	if c.BlocksInFlight <= 0 {
		c.BlocksInFlight = 2*c.Workers + 4
	}
	if c.CheckpointEvery <= 0 {
		c.CheckpointEvery = DefaultCheckpointEvery
	}
	return nil
}

// IngestOptions are per-upload settings.
type IngestOptions struct {
	// OSHashAlgo is Glance's os_hash_algo: "sha512" (default), "sha384" or "sha256".
	OSHashAlgo string
	// SignatureHash, when non-zero, is also computed over the stream
	// (img_signature_hash_method: SHA-224/256/384/512).
	SignatureHash crypto.Hash
	// MaxSize caps the stream; 0 means no cap. Exceeding it fails with ErrTooLarge.
	MaxSize int64
	// SkipMD5 leaves out Glance's MD5 checksum (IngestResult.MD5 is nil).
	SkipMD5 bool
	// Pins, when set, receives the pins of every chunk and manifest blob
	// the result refers to, and the caller ends it after committing (or
	// abandoning) the record that refers to them; the ingester's own
	// pins otherwise end when Ingest returns.
	Pins *PinSession
}

// IngestResult describes a stored stream.
type IngestResult struct {
	Manifest        *Manifest
	Root            ChunkID
	Size            int64
	MD5             []byte
	OSHashAlgo      string
	OSHash          []byte
	SignatureDigest []byte
	// NewChunks and NewBytes count the chunks this ingest wrote (not
	// present before) and their uncompressed bytes; ZeroBytes counts bytes
	// in zero runs, which are never stored.
	NewChunks int
	NewBytes  int64
	ZeroBytes int64
	// HashedBytes counts the bytes each whole-stream hash read: Size,
	// less what known content spared (0 when the whole stream was known;
	// when it stopped following a known stream, the bytes from the
	// checkpoint before that point on).
	HashedBytes int64
	// Known reports that the digests are those remembered of the same
	// content (the stream matched a remembered one to its end).
	Known bool
}

// Ingester turns a byte stream into stored chunks and a manifest. It is
// safe for concurrent use; each Ingest call runs its own pipeline.
type Ingester struct {
	store ChunkStore
	pins  *Pins
	cfg   IngestConfig
	log   *slog.Logger
	carry sync.Pool // *[]byte of Chunking.Max bytes, for chunks spanning blocks
}

// NewIngester returns an Ingester writing to store. pins must be the set
// the garbage collector of store uses (nil: a private set, for stores no
// collector runs on).
func NewIngester(store ChunkStore, pins *Pins, cfg IngestConfig) (*Ingester, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pins == nil {
		pins = NewPins()
	}
	g := &Ingester{store: store, pins: pins, cfg: cfg, log: logger(cfg.Logger)}
	g.carry.New = func() any { b := make([]byte, 0, cfg.Chunking.Max); return &b }
	return g, nil
}

// NewOSHash returns the hash for a Glance hashing_algorithm name.
func NewOSHash(algo string) (hash.Hash, error) {
	switch algo {
	case "":
		return newNamedHash(HashSHA512)
	case HashSHA512, HashSHA384, HashSHA256:
		return newNamedHash(algo)
	}
	return nil, Errorf(ErrInvalid, "unsupported hashing algorithm %q (want sha256, sha384 or sha512)", algo)
}

// block is a piece of the stream shared, read-only, by the hash goroutines
// and the chunk workers; it returns to the free list when its last user
// releases it.
type block struct {
	buf  []byte
	refs atomic.Int32
	free chan *block
}

func (b *block) release() {
	if b.refs.Add(-1) == 0 {
		b.free <- b
	}
}

type chunkJob struct {
	ref     *ChunkRef
	data    []byte
	release func()
	// done, if set, is closed once the chunk is named and stored.
	done chan struct{}
}

// Ingest reads r to the end, stores its chunks and its manifest, syncs the
// store once, and returns the manifest root. When it returns without error
// every byte the result refers to is durable. On error nothing refers to the
// chunks written; they are garbage for GC.
func (g *Ingester) Ingest(ctx context.Context, r io.Reader, opt IngestOptions) (*IngestResult, error) {
	if _, err := NewOSHash(opt.OSHashAlgo); err != nil {
		return nil, err
	}
	algo := opt.OSHashAlgo
	if algo == "" {
		algo = "sha512"
	}
	names := []string{algo}
	if !opt.SkipMD5 {
		names = append(names, HashMD5)
	}
	var sigName string
	if opt.SignatureHash != 0 {
		if !opt.SignatureHash.Available() {
			return nil, Errorf(ErrInvalid, "signature hash %v is not available", opt.SignatureHash)
		}
		n, err := hashName(opt.SignatureHash)
		if err != nil {
			return nil, err
		}
		sigName = n
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	hashers := make([]*streamHasher, len(names))
	for i, n := range names {
		h, err := newNamedHash(n)
		if err != nil {
			return nil, err
		}
		hashers[i] = &streamHasher{name: n, h: h, in: make(chan hashPiece, g.cfg.BlocksInFlight+8)}
		if g.cfg.Memo != nil {
			hashers[i].every = g.cfg.CheckpointEvery
		}
	}
	cutter, err := chunker.NewCutter(g.cfg.Chunking)
	if err != nil {
		return nil, err
	}

	// ctx is cancelled when eg.Wait returns; the manifest and the Sync use
	// the caller's context.
	parent := ctx
	eg, ctx := errgroup.WithContext(ctx)
	pins := opt.Pins
	if pins == nil {
		pins = g.pins.Begin()
		defer pins.End()
	}

	// Hash goroutines: one per whole-stream hash, fed in order by the feed.
	feed := newHashFeed(g, hashers, g.cfg.Memo != nil)
	for _, h := range hashers {
		eg.Go(func() error { h.run(); return nil })
	}
	eg.Go(func() error { return feed.run(ctx) })
	// Chunk workers.
	var newChunks, zeroBytes, newBytes atomic.Int64
	jobs := make(chan chunkJob, 4*g.cfg.Workers)
	for range g.cfg.Workers {
		eg.Go(func() error {
			for j := range jobs {
				err := g.storeChunk(ctx, pins, j, &newChunks, &newBytes, &zeroBytes)
				j.release()
				if err == nil && j.done != nil {
					close(j.done)
				}
				if err != nil {
					for j := range jobs { // drain so the reader never blocks
						j.release()
					}
					return err
				}
			}
			return nil
		})
	}

	// The reader and cutter run here.
	refs := make([][]ChunkRef, 0, 16) // pages of refs; pages never move, so workers may hold pointers
	const refPage = 4096
	nrefs := 0
	newRef := func(off int64, size int) *ChunkRef {
		if nrefs%refPage == 0 {
			refs = append(refs, make([]ChunkRef, refPage))
		}
		r := &refs[nrefs/refPage][nrefs%refPage]
		nrefs++
		r.Offset, r.Size = off, uint32(size)
		return r
	}
	free := make(chan *block, g.cfg.BlocksInFlight)
	for range g.cfg.BlocksInFlight {
		free <- &block{free: free}
	}
	var (
		total    int64
		chunkOff int64
		carryP   *[]byte // bytes of the current chunk from earlier blocks
	)
	// sendChunk hands a chunk to the workers and, while the feed follows
	// known content, tells the feed about it.
	sendChunk := func(j chunkJob) error {
		if feed.wantChunks() {
			j.done = make(chan struct{})
		}
		if err := g.send(ctx, jobs, j); err != nil {
			return err
		}
		if j.done == nil {
			return nil
		}
		select {
		case feed.events <- feedEvent{c: &feedChunk{ref: j.ref, done: j.done}}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	readErr := func() (err error) {
		defer func() {
			if err != nil {
				feed.aborted.Store(true)
			}
			close(feed.events)
			close(jobs)
		}()
		for {
			var b *block
			select {
			case b = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			if cap(b.buf) < g.cfg.BlockSize {
				b.buf = make([]byte, g.cfg.BlockSize)
			}
			n, err := io.ReadFull(r, b.buf[:g.cfg.BlockSize])
			b.buf = b.buf[:n]
			eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
			if err != nil && !eof {
				free <- b
				return fmt.Errorf("read upload stream: %w", err)
			}
			total += int64(n)
			if opt.MaxSize > 0 && total > opt.MaxSize {
				free <- b
				return Errorf(ErrTooLarge, "Image exceeds the storage quota: the upload is larger than %d bytes", opt.MaxSize)
			}
			if n > 0 {
				b.refs.Store(2) // the feed's and the cutter's
				select {
				case feed.events <- feedEvent{b: b, off: total - int64(n)}:
				case <-ctx.Done():
					return ctx.Err()
				}
				data := b.buf
				for len(data) > 0 {
					k, end := cutter.Scan(data)
					if !end {
						if carryP == nil {
							carryP = g.carry.Get().(*[]byte)
						}
						*carryP = append(*carryP, data...)
						break
					}
					if carryP != nil {
						*carryP = append(*carryP, data[:k]...)
						cp := carryP
						carryP = nil
						size := len(*cp) // read before send: the worker may recycle *cp at once
						if err := sendChunk(chunkJob{ref: newRef(chunkOff, size), data: *cp,
							release: func() { *cp = (*cp)[:0]; g.carry.Put(cp) }}); err != nil {
							b.release()
							return err
						}
						chunkOff += int64(size)
					} else {
						b.refs.Add(1)
						if err := sendChunk(chunkJob{ref: newRef(chunkOff, k), data: data[:k:k], release: b.release}); err != nil {
							b.release() // the cutter's reference; send released the job's
							return err
						}
						chunkOff += int64(k)
					}
					data = data[k:]
				}
				b.release()
			} else {
				free <- b
			}
			if eof {
				if carryP != nil && len(*carryP) > 0 {
					cp := carryP
					carryP = nil
					size := len(*cp)
					if err := sendChunk(chunkJob{ref: newRef(chunkOff, size), data: *cp,
						release: func() { *cp = (*cp)[:0]; g.carry.Put(cp) }}); err != nil {
						return err
					}
					chunkOff += int64(size)
				}
				return nil
			}
		}
	}()
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	if readErr != nil {
		return nil, readErr
	}
	if chunkOff != total {
		return nil, fmt.Errorf("ingest: chunks cover %d bytes of %d", chunkOff, total)
	}

	m := &Manifest{Size: total, Chunks: make([]ChunkRef, 0, nrefs)}
	for i := 0; i < nrefs; i++ {
		m.Chunks = append(m.Chunks, refs[i/refPage][i%refPage])
	}
	root, blobs := ManifestBlobs(m)
	for _, b := range blobs {
		if err := pins.Pin(b.ID, func() error { return g.store.Put(parent, b.ID, b.Data) }); err != nil {
			return nil, fmt.Errorf("ingest: store manifest %s: %w", root, err)
		}
	}
	// One sync makes every chunk and the manifest durable, including chunks
	// skipped because another upload wrote them (the WAL is sequential).
	if err := g.store.Sync(parent); err != nil {
		return nil, fmt.Errorf("ingest: sync: %w", err)
	}
	res := &IngestResult{
		Manifest: m, Root: root, Size: total, OSHashAlgo: algo,
		NewChunks: int(newChunks.Load()), NewBytes: newBytes.Load(), ZeroBytes: zeroBytes.Load(),
		HashedBytes: hashers[0].hashed,
	}
	sums := make(map[string][]byte, len(hashers))
	if feed.known != nil {
		res.Known = true
		for _, h := range hashers {
			sums[h.name] = feed.known.Hashes[h.name].Sum
		}
	} else {
		for _, h := range hashers {
			if h.err != nil {
				return nil, h.err
			}
			sums[h.name] = h.h.Sum(nil)
		}
	}
	res.OSHash = sums[algo]
	if !opt.SkipMD5 {
		res.MD5 = sums[HashMD5]
	}
	if sigName != "" {
		res.SignatureDigest = sums[sigName]
	}
	g.remember(parent, res, hashers)
	return res, nil
}

// remember tells the memo what this ingest learnt: the digests and
// checkpoints of the content it hashed, or (for known content) that the
// content was used again, which keeps it from being evicted first.
func (g *Ingester) remember(ctx context.Context, res *IngestResult, hashers []*streamHasher) {
	if g.cfg.Memo == nil || len(res.Manifest.Chunks) == 0 {
		return
	}
	d := StreamDigests{Root: res.Root, First: res.Manifest.Chunks[0].ID, Size: res.Size, Every: g.cfg.CheckpointEvery}
	if !res.Known { // known content: only the time, the memo keeps the rest
		d.Hashes = make(map[string]StreamHash, len(hashers))
		for _, h := range hashers {
			if h.pos != res.Size || int64(len(h.states)) != res.Size/g.cfg.CheckpointEvery {
				g.log.Warn("ingest: hash checkpoints incomplete; not remembering the stream", "root", res.Root, "hash", h.name)
				return
			}
			d.Hashes[h.name] = StreamHash{Sum: h.h.Sum(nil), States: h.states}
		}
	}
	if err := g.cfg.Memo.RememberStream(ctx, d); err != nil {
		g.log.Warn("ingest: remember stream digests", "root", res.Root, "err", err)
	}
}

func (g *Ingester) send(ctx context.Context, jobs chan<- chunkJob, j chunkJob) error {
	select {
	case jobs <- j:
		return nil
	case <-ctx.Done():
		j.release()
		return ctx.Err()
	}
}

// storeChunk names one chunk and stores it unless it is a zero run or
// already present.
func (g *Ingester) storeChunk(ctx context.Context, pins *PinSession, j chunkJob, newChunks, newBytes, zeroBytes *atomic.Int64) error {
	if IsAllZero(j.data) {
		j.ref.ID = ZeroChunk
		zeroBytes.Add(int64(len(j.data)))
		return nil
	}
	id := SumChunk(j.data)
	j.ref.ID = id
	var present bool
	err := pins.Pin(id, func() error {
		var err error
		present, err = g.store.Has(ctx, id)
		return err
	})
	if err != nil {
		return fmt.Errorf("ingest: has %s: %w", id, err)
	}
	if present {
		return nil
	}
	if err := g.store.Put(ctx, id, j.data); err != nil {
		return fmt.Errorf("ingest: put %s: %w", id, err)
	}
	newChunks.Add(1)
	newBytes.Add(int64(len(j.data)))
	return nil
}
