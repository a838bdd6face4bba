package engine

import (
	"context"
	"crypto"
	"crypto/md5"
	"crypto/sha256"
	"crypto/sha512"
	"encoding"
	"encoding/binary"
	"fmt"
	"hash"
	"slices"
)

// Known content (docs/storage.md, "Known content"). An upload of content
// already stored still has to produce Glance's whole-stream digests (MD5,
// os_hash, a signature's hash). Those cost more CPU than everything else
// a re-upload does: chunking, BLAKE3 and presence checks. But the
// BLAKE3 IDs prove the content: while an upload's chunks are the chunks of
// a stored manifest, in order, its bytes are that manifest's bytes, and so
// are their digests. A StreamMemo remembers the digests of ingested
// streams, with the hash states at every CheckpointEvery bytes, so that an
// ingest can skip hashing while its chunks follow a remembered stream and
// take the remembered digests if they follow it to the end. At the first
// chunk that differs, the hashers resume from the last checkpoint before
// it, reading the bytes since the checkpoint back from the store (at most
// CheckpointEvery), and hash the rest of the stream as it comes.

// DefaultCheckpointEvery is the default interval, in stream bytes, of the
// hash states a StreamMemo keeps (IngestConfig.CheckpointEvery): it bounds
// what an ingest reads back when an upload stops following a remembered
// stream.
const DefaultCheckpointEvery = 64 << 20

// StreamMemo remembers the digests of streams ingested before. It is a
// cache: an entry that is lost only costs the next upload of the content
// its hashing, and an entry is never wrong, since it is keyed by the
// content's manifest root. Implementations are safe for concurrent use.
type StreamMemo interface {
	// StreamsStartingWith returns up to limit remembered streams whose
	// first chunk is first, the most recently remembered first.
	StreamsStartingWith(ctx context.Context, first ChunkID, limit int) ([]StreamDigests, error)
	// RememberStream stores s, merging it with what is remembered of the
	// same root (digests of other algorithms are kept).
	RememberStream(ctx context.Context, s StreamDigests) error
	// ForgetStream drops what is remembered of root.
	ForgetStream(ctx context.Context, root ChunkID) error
}

// StreamDigests is what a StreamMemo keeps of one ingested stream.
type StreamDigests struct {
	// Root is the stream's manifest root, First its first chunk (ZeroChunk
	// for a zero run) and Size its length.
	Root  ChunkID
	First ChunkID
	Size  int64
	// RememberedAt is the Unix time (nanoseconds) the entry was last written.
	RememberedAt int64
	// Every is the interval of the checkpoints, in bytes.
	Every int64
	// Hashes holds the digests by algorithm (HashName).
	Hashes map[string]StreamHash
}

// StreamHash is one algorithm's digest of a stream and its checkpoints.
type StreamHash struct {
	Sum []byte
	// States[i] is the hash's marshaled state after (i+1)×Every bytes:
	// there are Size/Every of them.
	States [][]byte
}

// covers reports whether d has complete digests for every algorithm in
// names, with checkpoints every `every` bytes.
func (d *StreamDigests) covers(names []string, every int64) bool {
	if d.Every != every || every <= 0 {
		return false
	}
	for _, n := range names {
		h, ok := d.Hashes[n]
		if !ok || len(h.Sum) == 0 || int64(len(h.States)) != d.Size/every {
			return false
		}
	}
	return true
}

// Hash algorithm names used in StreamDigests.
const (
	HashMD5    = "md5"
	HashSHA224 = "sha224"
	HashSHA256 = "sha256"
	HashSHA384 = "sha384"
	HashSHA512 = "sha512"
)

// hashName returns the StreamDigests name of a crypto.Hash.
func hashName(h crypto.Hash) (string, error) {
	switch h {
	case crypto.MD5:
		return HashMD5, nil
	case crypto.SHA224:
		return HashSHA224, nil
	case crypto.SHA256:
		return HashSHA256, nil
	case crypto.SHA384:
		return HashSHA384, nil
	case crypto.SHA512:
		return HashSHA512, nil
	}
	return "", Errorf(ErrInvalid, "signature hash %v is not supported", h)
}

// newNamedHash returns a fresh hash for a StreamDigests name.
func newNamedHash(name string) (hash.Hash, error) {
	switch name {
	case HashMD5:
		return md5.New(), nil
	case HashSHA224:
		return sha256.New224(), nil
	case HashSHA256:
		return sha256.New(), nil
	case HashSHA384:
		return sha512.New384(), nil
	case HashSHA512:
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unknown hash algorithm %q", name)
}

// marshalState returns h's state; every hash newNamedHash returns has one.
func marshalState(h hash.Hash) ([]byte, error) {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil, fmt.Errorf("hash %T cannot save its state", h)
	}
	return m.MarshalBinary()
}

func restoreState(h hash.Hash, state []byte) error {
	u, ok := h.(encoding.BinaryUnmarshaler)
	if !ok {
		return fmt.Errorf("hash %T cannot restore a state", h)
	}
	return u.UnmarshalBinary(state)
}

// Encoding of a StreamDigests, shared by the stores that keep them:
//
//	"MSD1" | size int64 | remembered int64 | every int64 | root [32] | first [32] | n uint8 |
//	n × (name len uint8 | name | sum len uint8 | sum | states uint32 | states × (len uint16 | state))
var streamMagic = [4]byte{'M', 'S', 'D', '1'}

// EncodeStreamDigests returns the stored form of d (algorithms in name order).
func EncodeStreamDigests(d StreamDigests) []byte {
	b := append([]byte(nil), streamMagic[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(d.Size))
	b = binary.LittleEndian.AppendUint64(b, uint64(d.RememberedAt))
	b = binary.LittleEndian.AppendUint64(b, uint64(d.Every))
	b = append(b, d.Root[:]...)
	b = append(b, d.First[:]...)
	names := make([]string, 0, len(d.Hashes))
	for n := range d.Hashes {
		names = append(names, n)
	}
	slices.Sort(names)
	b = append(b, byte(len(names)))
	for _, n := range names {
		h := d.Hashes[n]
		b = append(b, byte(len(n)))
		b = append(b, n...)
		b = append(b, byte(len(h.Sum)))
		b = append(b, h.Sum...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h.States)))
		for _, s := range h.States {
			b = binary.LittleEndian.AppendUint16(b, uint16(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

// DecodeStreamDigests parses what EncodeStreamDigests produced. The
// result does not alias b.
func DecodeStreamDigests(b []byte) (StreamDigests, error) {
	b = slices.Clone(b)
	var d StreamDigests
	bad := func(what string) (StreamDigests, error) {
		return StreamDigests{}, fmt.Errorf("decode stream digests: %w: %s", ErrCorrupt, what)
	}
	if len(b) < 4+8+8+8+64+1 || [4]byte(b[:4]) != streamMagic {
		return bad("bad header")
	}
	d.Size = int64(binary.LittleEndian.Uint64(b[4:]))
	d.RememberedAt = int64(binary.LittleEndian.Uint64(b[12:]))
	d.Every = int64(binary.LittleEndian.Uint64(b[20:]))
	copy(d.Root[:], b[28:60])
	copy(d.First[:], b[60:92])
	n := int(b[92])
	b = b[93:]
	take := func(k int) ([]byte, bool) {
		if len(b) < k {
			return nil, false
		}
		v := b[:k:k]
		b = b[k:]
		return v, true
	}
	d.Hashes = make(map[string]StreamHash, n)
	for range n {
		l, ok := take(1)
		if !ok {
			return bad("truncated")
		}
		name, ok := take(int(l[0]))
		if !ok {
			return bad("truncated name")
		}
		if l, ok = take(1); !ok {
			return bad("truncated")
		}
		var h StreamHash
		if h.Sum, ok = take(int(l[0])); !ok {
			return bad("truncated digest")
		}
		c, ok := take(4)
		if !ok {
			return bad("truncated")
		}
		count := int(binary.LittleEndian.Uint32(c))
		if count > len(b)/2 {
			return bad("state count past the end")
		}
		h.States = make([][]byte, count)
		for i := range h.States {
			l, ok := take(2)
			if !ok {
				return bad("truncated state")
			}
			if h.States[i], ok = take(int(binary.LittleEndian.Uint16(l))); !ok {
				return bad("truncated state")
			}
		}
		d.Hashes[string(name)] = h
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	return d, nil
}

// MergeStreamDigests returns old with the algorithms of add set (add's
// digests win: the content is the same, so they are equal) and add's
// time. add without hashes only refreshes the time. Entries with other
// checkpoint intervals are not merged: add replaces old.
func MergeStreamDigests(old, add StreamDigests) StreamDigests {
	out := add
	if len(add.Hashes) == 0 {
		out.Every = old.Every
	}
	out.Hashes = make(map[string]StreamHash, len(old.Hashes)+len(add.Hashes))
	if old.Root == add.Root && old.Size == add.Size && old.Every == out.Every {
		for n, h := range old.Hashes {
			out.Hashes[n] = h
		}
	}
	for n, h := range add.Hashes {
		out.Hashes[n] = h
	}
	return out
}
