package engine

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/zeebo/blake3"
)

// ChunkID names a chunk by the BLAKE3-256 digest of its uncompressed bytes.
// It is a value type, comparable and usable as a map key. The zero value is
// reserved: in a manifest it marks a run of zero bytes that is never stored.
type ChunkID [32]byte

// ZeroChunk is the reserved ID of an all-zero run in a manifest.
var ZeroChunk ChunkID

// SumChunk returns the ChunkID of data.
func SumChunk(data []byte) ChunkID {
	return ChunkID(blake3.Sum256(data))
}

// String returns the lower-case hex form of id.
func (id ChunkID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the reserved zero-run ID.
func (id ChunkID) IsZero() bool { return id == ZeroChunk }

// ParseChunkID parses the hex form produced by String.
func ParseChunkID(s string) (ChunkID, error) {
	var id ChunkID
	if len(s) != 64 {
		return id, fmt.Errorf("parse chunk id %q: %w: want 64 hex digits", s, ErrInvalid)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("parse chunk id %q: %w: %v", s, ErrInvalid, err)
	}
	return id, nil
}

// MarshalText implements encoding.TextMarshaler (hex).
func (id ChunkID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. An empty text is the zero ID.
func (id *ChunkID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ChunkID{}
		return nil
	}
	v, err := ParseChunkID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// IsAllZero reports whether every byte of b is zero.
func IsAllZero(b []byte) bool {
	for len(b) >= 32 {
		if binary.LittleEndian.Uint64(b)|binary.LittleEndian.Uint64(b[8:])|
			binary.LittleEndian.Uint64(b[16:])|binary.LittleEndian.Uint64(b[24:]) != 0 {
			return false
		}
		b = b[32:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
