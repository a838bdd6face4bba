package engine

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/mosaicimg/mosaic/chunker"
)

// memMemo is an in-memory StreamMemo that stores entries in their encoded
// form, as a real store does.
type memMemo struct {
	mu      sync.Mutex
	m       map[ChunkID][]byte // root → EncodeStreamDigests
	clock   int64
	forgot  []ChunkID
	lookups int
}

func newMemMemo() *memMemo { return &memMemo{m: map[ChunkID][]byte{}} }

func (m *memMemo) StreamsStartingWith(_ context.Context, first ChunkID, limit int) ([]StreamDigests, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lookups++
	var out []StreamDigests
	for _, b := range m.m {
		d, err := DecodeStreamDigests(b)
		if err != nil {
			return nil, err
		}
		if d.First == first {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b StreamDigests) int { return cmp.Compare(b.RememberedAt, a.RememberedAt) })
	return out[:min(limit, len(out))], nil
}

func (m *memMemo) RememberStream(_ context.Context, d StreamDigests) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.clock++
	d.RememberedAt = m.clock
	if old, ok := m.m[d.Root]; ok {
		prev, err := DecodeStreamDigests(old)
		if err != nil {
			return err
		}
		d = MergeStreamDigests(prev, d)
	}
	if len(d.Hashes) > 0 {
		m.m[d.Root] = EncodeStreamDigests(d)
	}
	return nil
}

func (m *memMemo) ForgetStream(_ context.Context, root ChunkID) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.m, root)
	m.forgot = append(m.forgot, root)
	return nil
}

func (m *memMemo) get(root ChunkID) (StreamDigests, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.m[root]
	if !ok {
		return StreamDigests{}, false
	}
	d, err := DecodeStreamDigests(b)
	if err != nil {
		panic(err)
	}
	return d, true
}

// knownParams are small chunks, so small streams have many of them, and a
// checkpoint every 256 KiB.
var knownParams = chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10, Align: 4 << 10, Normalization: 2}

const knownEvery = 256 << 10

func newKnownIngester(t *testing.T, st ChunkStore, memo StreamMemo) *Ingester {
	t.Helper()
	g, err := NewIngester(st, nil, IngestConfig{Chunking: knownParams, Workers: 2, BlockSize: 256 << 10,
		Memo: memo, CheckpointEvery: knownEvery})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// mixedData is random bytes with zero runs (stored as zero chunks).
func mixedData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	for z := 0; z < 3 && n > 400<<10; z++ {
		at := rng.IntN(n - 200<<10)
		clear(b[at : at+rng.IntN(200<<10)])
	}
	return b
}

func ingestWith(t *testing.T, g *Ingester, data []byte, opt IngestOptions) *IngestResult {
	t.Helper()
	res, err := g.Ingest(context.Background(), bytes.NewReader(data), opt)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// checkDigests compares the result with the digests computed directly.
func checkDigests(t *testing.T, what string, res *IngestResult, data []byte) {
	t.Helper()
	if m := md5.Sum(data); !bytes.Equal(res.MD5, m[:]) {
		t.Errorf("%s: md5 %x, want %x", what, res.MD5, m)
	}
	if s := sha512.Sum512(data); !bytes.Equal(res.OSHash, s[:]) {
		t.Errorf("%s: sha512 %x, want %x", what, res.OSHash, s)
	}
	if res.Size != int64(len(data)) {
		t.Errorf("%s: size %d, want %d", what, res.Size, len(data))
	}
}

// The first ingest remembers the digests and a checkpoint every
// CheckpointEvery bytes; the same content again hashes nothing and
// gets the same digests.
func TestKnownContentIsNotHashedAgain(t *testing.T) {
	st, memo := newMemStore(), newMemMemo()
	g := newKnownIngester(t, st, memo)
	data := mixedData(3<<20+12345, 1)
	first := ingestWith(t, g, data, IngestOptions{})
	checkDigests(t, "first", first, data)
	if first.Known || first.HashedBytes != int64(len(data)) {
		t.Fatalf("first ingest: known %v, hashed %d of %d", first.Known, first.HashedBytes, len(data))
	}
	d, ok := memo.get(first.Root)
	if !ok {
		t.Fatal("first ingest remembered nothing")
	}
	if d.First != first.Manifest.Chunks[0].ID || d.Size != int64(len(data)) || d.Every != knownEvery {
		t.Fatalf("remembered %+v", d)
	}
	for _, n := range []string{HashSHA512, HashMD5} {
		if got := len(d.Hashes[n].States); got != len(data)/knownEvery {
			t.Errorf("%s: %d checkpoints, want %d", n, got, len(data)/knownEvery)
		}
	}
	again := ingestWith(t, g, data, IngestOptions{})
	checkDigests(t, "again", again, data)
	if !again.Known || again.HashedBytes != 0 || again.Root != first.Root || again.NewChunks != 0 {
		t.Fatalf("again: known %v, hashed %d, root %s (first %s), new chunks %d",
			again.Known, again.HashedBytes, again.Root, first.Root, again.NewChunks)
	}
	// A different os_hash algorithm is not remembered: hashed in full, then remembered too.
	other := ingestWith(t, g, data, IngestOptions{OSHashAlgo: "sha256"})
	if s := sha256.Sum256(data); !bytes.Equal(other.OSHash, s[:]) || other.Known || other.HashedBytes != int64(len(data)) {
		t.Fatalf("sha256 upload: known %v, hashed %d, sum ok %v", other.Known, other.HashedBytes, bytes.Equal(other.OSHash, s[:]))
	}
	third := ingestWith(t, g, data, IngestOptions{OSHashAlgo: "sha256"})
	if s := sha256.Sum256(data); !bytes.Equal(third.OSHash, s[:]) || !third.Known {
		t.Fatalf("sha256 again: known %v, sum ok %v", third.Known, bytes.Equal(third.OSHash, s[:]))
	}
	// The sha512 digests survived the merge.
	if again := ingestWith(t, g, data, IngestOptions{}); !again.Known {
		t.Fatal("sha512 digests lost when sha256 was remembered")
	}
}

// Uploads that follow a remembered stream for a while and then differ
// (one byte changed anywhere, a prefix, an extension) get the digests of
// their own bytes, and hash only from the checkpoint before the first
// differing chunk.
func TestKnownContentDivergesAnywhere(t *testing.T) {
	st, memo := newMemStore(), newMemMemo()
	g := newKnownIngester(t, st, memo)
	base := mixedData(3<<20+777, 2)
	res := ingestWith(t, g, base, IngestOptions{})
	m := res.Manifest
	rng := rand.New(rand.NewPCG(7, 7))

	type variant struct {
		name string
		data []byte
		// from: the first byte of the first chunk that can differ from base.
		from int64
	}
	var vs []variant
	flip := func(at int) {
		d := slices.Clone(base)
		d[at] ^= 0x5a
		vs = append(vs, variant{fmt.Sprintf("byte %d flipped", at), d, m.Chunks[m.Find(int64(at))].Offset})
	}
	for _, at := range []int{0, 1, int(m.Chunks[1].Offset), knownEvery - 1, knownEvery, knownEvery + 1, 2*knownEvery + 4096,
		len(base) - 1, int(m.Chunks[len(m.Chunks)-1].Offset)} {
		flip(at)
	}
	for range 12 {
		flip(rng.IntN(len(base)))
	}
	for _, n := range []int{1, 4096, int(m.Chunks[5].Offset), int(m.Chunks[5].Offset) + 1, knownEvery, 3*knownEvery + 100, len(base) - 1} {
		// A prefix: cut where the chunker then cuts differently at the end.
		i := m.Find(int64(n - 1))
		vs = append(vs, variant{fmt.Sprintf("prefix of %d", n), base[:n], m.Chunks[i].Offset})
	}
	ext := append(slices.Clone(base), mixedData(300<<10, 9)...)
	vs = append(vs, variant{"extended", ext, m.Chunks[len(m.Chunks)-1].Offset})
	// Chunks inserted in the middle: the rest moves, then realigns.
	ins := slices.Concat(base[:m.Chunks[40].Offset], mixedData(50<<10, 10), base[m.Chunks[40].Offset:])
	vs = append(vs, variant{"bytes inserted", ins, m.Chunks[40].Offset})

	// Each variant is compared with base alone: the memo holds only base.
	memo.mu.Lock()
	only := maps.Clone(memo.m)
	memo.mu.Unlock()
	for _, v := range vs {
		memo.mu.Lock()
		memo.m = maps.Clone(only)
		memo.mu.Unlock()
		got := ingestWith(t, g, v.data, IngestOptions{})
		checkDigests(t, v.name, got, v.data)
		if got.Known {
			t.Errorf("%s: taken as known content", v.name)
		}
		// Allow one chunk more before from (an aligned cut point may
		// land a little earlier).
		lo := max(0, v.from-int64(knownParams.Max)) / knownEvery * knownEvery
		if want := int64(len(v.data)) - lo; got.HashedBytes > want {
			t.Errorf("%s: hashed %d bytes, want at most %d (from %d)", v.name, got.HashedBytes, want, v.from)
		}
		// The variant was remembered: it is known the second time.
		if got := ingestWith(t, g, v.data, IngestOptions{}); !got.Known || got.HashedBytes != 0 {
			t.Errorf("%s: second time known %v, hashed %d", v.name, got.Known, got.HashedBytes)
		}
	}
}

// More streams than an ingest follows start with the same chunk: the most
// recently used ones are followed, so content uploaded again and again
// stays known.
func TestKnownContentPrefersRecentlyUsedStreams(t *testing.T) {
	st, memo := newMemStore(), newMemMemo()
	g := newKnownIngester(t, st, memo)
	base := mixedData(1<<20, 15)
	m := ingestWith(t, g, base, IngestOptions{}).Manifest
	head := base[:m.Chunks[3].Offset]
	variants := make([][]byte, 2*maxKnownCandidates)
	for i := range variants {
		variants[i] = slices.Concat(head, mixedData(300<<10, uint64(100+i)))
		ingestWith(t, g, variants[i], IngestOptions{})
	}
	// base is the oldest of 2×maxKnownCandidates+1 streams: not followed.
	if got := ingestWith(t, g, base, IngestOptions{}); got.Known {
		t.Error("base followed although older than the candidates an ingest follows")
	} else {
		checkDigests(t, "base", got, base)
	}
	// That upload used (re-remembered) base: now it is the most recent.
	if got := ingestWith(t, g, base, IngestOptions{}); !got.Known {
		t.Error("base not known right after it was uploaded")
	}
	// Variant 0 is older than maxKnownCandidates others; once used again
	// it stays known while newer streams keep arriving.
	if got := ingestWith(t, g, variants[0], IngestOptions{}); got.Known {
		t.Error("variant 0 followed although older than the candidates an ingest follows")
	}
	for range 2 * maxKnownCandidates {
		if got := ingestWith(t, g, variants[0], IngestOptions{}); !got.Known {
			t.Error("variant 0 not known")
		}
		ingestWith(t, g, slices.Concat(head, mixedData(100<<10, rand.Uint64())), IngestOptions{})
	}
}

// Several remembered streams start with the same chunk: the upload follows
// all of them and resumes from the one it followed longest.
func TestKnownContentFollowsSeveralStreams(t *testing.T) {
	st, memo := newMemStore(), newMemMemo()
	g := newKnownIngester(t, st, memo)
	base := mixedData(4<<20, 3)
	m := ingestWith(t, g, base, IngestOptions{}).Manifest
	at := func(i int) int { return int(m.Chunks[i].Offset) }
	short := slices.Concat(base[:at(20)], mixedData(1<<20, 11))              // shares 20 chunks
	long := slices.Concat(base[:at(len(m.Chunks)-30)], mixedData(1<<20, 12)) // shares all but 30
	ingestWith(t, g, short, IngestOptions{})
	ingestWith(t, g, long, IngestOptions{})
	up := slices.Concat(base[:at(len(m.Chunks)-30)], mixedData(1<<20, 13))
	got := ingestWith(t, g, up, IngestOptions{})
	checkDigests(t, "follows the longest", got, up)
	lo := int64(at(len(m.Chunks)-31)) / knownEvery * knownEvery
	if want := int64(len(up)) - lo; got.HashedBytes > want {
		t.Errorf("hashed %d bytes, want at most %d", got.HashedBytes, want)
	}
}

// The signature hash is remembered like the others: a signed upload of
// known content needs it remembered too.
func TestKnownContentWithSignatureHash(t *testing.T) {
	st, memo := newMemStore(), newMemMemo()
	g := newKnownIngester(t, st, memo)
	data := mixedData(2<<20, 4)
	ingestWith(t, g, data, IngestOptions{})
	signed := IngestOptions{SignatureHash: crypto.SHA256}
	res := ingestWith(t, g, data, signed)
	want := sha256.Sum256(data)
	if res.Known || !bytes.Equal(res.SignatureDigest, want[:]) {
		t.Fatalf("first signed: known %v, digest ok %v", res.Known, bytes.Equal(res.SignatureDigest, want[:]))
	}
	res = ingestWith(t, g, data, signed)
	checkDigests(t, "signed again", res, data)
	if !res.Known || !bytes.Equal(res.SignatureDigest, want[:]) {
		t.Fatalf("signed again: known %v, digest ok %v", res.Known, bytes.Equal(res.SignatureDigest, want[:]))
	}
	// Signature hash = os_hash algorithm: one hasher, both results.
	res = ingestWith(t, g, data, IngestOptions{SignatureHash: crypto.SHA512})
	if s := sha512.Sum512(data); !bytes.Equal(res.SignatureDigest, s[:]) || !bytes.Equal(res.OSHash, s[:]) {
		t.Fatal("SHA-512 signature digest differs from the os_hash")
	}
}

// A remembered stream whose manifest is gone (collected) is forgotten, and
// damaged entries are ignored: the upload is hashed in full, correctly.
func TestKnownContentDamagedOrGoneMemo(t *testing.T) {
	st, memo := newMemStore(), newMemMemo()
	g := newKnownIngester(t, st, memo)
	data := mixedData(2<<20, 5)
	res := ingestWith(t, g, data, IngestOptions{})

	// A checkpoint that does not restore.
	d, _ := memo.get(res.Root)
	h := d.Hashes[HashMD5]
	h.States = slices.Clone(h.States)
	h.States[2] = []byte("not a state")
	d.Hashes[HashMD5] = h
	memo.mu.Lock()
	memo.m[res.Root] = EncodeStreamDigests(d)
	memo.mu.Unlock()
	flipped := slices.Clone(data)
	flipped[len(data)-10] ^= 1
	got := ingestWith(t, g, flipped, IngestOptions{})
	checkDigests(t, "damaged checkpoint", got, flipped)
	if got.HashedBytes != int64(len(flipped)) {
		t.Errorf("damaged checkpoint: hashed %d of %d", got.HashedBytes, len(flipped))
	}

	// A digest of the wrong length.
	data2 := mixedData(1<<20, 6)
	res2 := ingestWith(t, g, data2, IngestOptions{})
	d, _ = memo.get(res2.Root)
	h = d.Hashes[HashSHA512]
	h.Sum = h.Sum[:10]
	d.Hashes[HashSHA512] = h
	memo.mu.Lock()
	memo.m[res2.Root] = EncodeStreamDigests(d)
	memo.mu.Unlock()
	got = ingestWith(t, g, data2, IngestOptions{})
	checkDigests(t, "short digest", got, data2)
	if got.Known {
		t.Error("a damaged entry was taken as known content")
	}

	// The manifest is gone: the entry is forgotten.
	data3 := mixedData(1<<20, 7)
	res3 := ingestWith(t, g, data3, IngestOptions{})
	st.mu.Lock()
	delete(st.m, res3.Root)
	st.mu.Unlock()
	got = ingestWith(t, g, data3, IngestOptions{})
	checkDigests(t, "manifest gone", got, data3)
	if got.Known || !slices.Contains(memo.forgot, res3.Root) {
		t.Errorf("manifest gone: known %v, forgotten %v", got.Known, slices.Contains(memo.forgot, res3.Root))
	}
}

// failingGets fails Get of one chunk, once armed.
type failingGets struct {
	*memStore
	mu   sync.Mutex
	fail ChunkID
}

func (s *failingGets) Get(ctx context.Context, id ChunkID, buf []byte) ([]byte, error) {
	s.mu.Lock()
	bad := id == s.fail
	s.mu.Unlock()
	if bad {
		return nil, fmt.Errorf("injected read error: %w", ErrCorrupt)
	}
	return s.memStore.Get(ctx, id, buf)
}

// When the bytes since the checkpoint cannot be read back, the ingest
// fails with the error: it never returns digests it did not compute.
func TestKnownContentReadBackFailureFailsTheIngest(t *testing.T) {
	st := &failingGets{memStore: newMemStore()}
	memo := newMemMemo()
	g := newKnownIngester(t, st, memo)
	data := mixedData(2<<20, 8)
	m := ingestWith(t, g, data, IngestOptions{}).Manifest
	i := m.Find(knownEvery + 1000)
	for m.Chunks[i].ID.IsZero() {
		i++
	}
	st.mu.Lock()
	st.fail = m.Chunks[i].ID
	st.mu.Unlock()
	// Differ after chunk i, before the next checkpoint.
	j := i + 1
	for m.Chunks[j].Offset < m.Chunks[i].Offset+int64(knownParams.Max) {
		j++
	}
	if m.Chunks[j].Offset >= 2*knownEvery {
		t.Fatalf("test layout: chunk %d starts at %d, past the next checkpoint", j, m.Chunks[j].Offset)
	}
	changed := slices.Clone(data)
	changed[m.Chunks[j].Offset+10] ^= 1
	_, err := g.Ingest(context.Background(), bytes.NewReader(changed), IngestOptions{})
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("ingest with an unreadable chunk to read back: %v, want ErrCorrupt", err)
	}
}

// Concurrent uploads of the same and of related content.
func TestKnownContentConcurrentUploads(t *testing.T) {
	st, memo := newMemStore(), newMemMemo()
	g := newKnownIngester(t, st, memo)
	base := mixedData(2<<20, 14)
	ingestWith(t, g, base, IngestOptions{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := base
			if w%2 == 1 {
				d = slices.Clone(base)
				d[(w*300_000)%len(d)] ^= 1
			}
			res, err := g.Ingest(context.Background(), bytes.NewReader(d), IngestOptions{})
			if err != nil {
				t.Error(err)
				return
			}
			checkDigests(t, fmt.Sprintf("upload %d", w), res, d)
		}()
	}
	wg.Wait()
}
