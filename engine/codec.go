package engine

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Chunk encoding, shared by every store and by node-to-node transfers:
//
//	byte 0     codec (CodecRaw or CodecZstd)
//	bytes 1-4  uncompressed length, little endian uint32
//	bytes 5-12 first-written time, Unix seconds, little endian int64
//	bytes 13-  payload: the raw bytes, or one zstd frame
//
// The header is small and fixed so that a store can read length and age
// without decompressing.
const (
	CodecRaw  byte = 0
	CodecZstd byte = 1

	chunkHeaderLen = 13
)

// minZstdSaving is the fraction of a chunk zstd must save for the compressed
// form to be kept; below it, the chunk is stored raw, which reads faster.
const minZstdSaving = 1.0 / 16

var (
	// EncodeAll borrows one of the encoder's states per call; concurrency
	// bounds how many calls run at once, so it must cover every worker.
	zstdEncoder, _ = zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(max(4, runtime.GOMAXPROCS(0))),
		zstd.WithLowerEncoderMem(true),
		zstd.WithZeroFrames(true))
	zstdDecoder, _ = zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.WithDecoderMaxMemory(1<<30))
)

// EncodeChunk appends the encoded form of data to dst and returns it.
// now is the first-written time recorded in the header.
func EncodeChunk(dst, data []byte, now time.Time) []byte {
	start := len(dst)
	// Room for the header and the worst case of either form, so neither
	// the zstd frame nor the raw fallback reallocates.
	dst = slices.Grow(dst, chunkHeaderLen+len(data)+len(data)/128+64)
	dst = append(dst, CodecZstd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(dst[start+1:], uint32(len(data)))
	binary.LittleEndian.PutUint64(dst[start+5:], uint64(now.Unix()))
	dst = zstdEncoder.EncodeAll(data, dst)
	if saved := len(data) - (len(dst) - start - chunkHeaderLen); float64(saved) < float64(len(data))*minZstdSaving {
		dst = dst[:start+chunkHeaderLen]
		dst[start] = CodecRaw
		dst = append(dst, data...)
	}
	return dst
}

// ChunkHeader is the decoded fixed header of an encoded chunk.
type ChunkHeader struct {
	Codec     byte
	Size      uint32
	WrittenAt int64
}

// ParseChunkHeader decodes the header of an encoded chunk.
func ParseChunkHeader(enc []byte) (ChunkHeader, error) {
	if len(enc) < chunkHeaderLen {
		return ChunkHeader{}, fmt.Errorf("decode chunk: %w: %d bytes is shorter than the header", ErrCorrupt, len(enc))
	}
	return ChunkHeader{
		Codec:     enc[0],
		Size:      binary.LittleEndian.Uint32(enc[1:]),
		WrittenAt: int64(binary.LittleEndian.Uint64(enc[5:])),
	}, nil
}

// DecodeChunk decodes enc into buf (reused when large enough) and verifies
// the result against id. It never returns unverified bytes.
func DecodeChunk(id ChunkID, enc, buf []byte) ([]byte, error) {
	h, err := ParseChunkHeader(enc)
	if err != nil {
		return nil, fmt.Errorf("chunk %s: %w", id, err)
	}
	payload := enc[chunkHeaderLen:]
	var out []byte
	switch h.Codec {
	case CodecRaw:
		if uint32(len(payload)) != h.Size {
			return nil, &CorruptError{ID: id, Got: SumChunk(payload)}
		}
		out = append(buf[:0], payload...)
	case CodecZstd:
		if cap(buf) < int(h.Size) {
			buf = make([]byte, 0, h.Size)
		}
		out, err = zstdDecoder.DecodeAll(payload, buf[:0])
		if err != nil {
			return nil, fmt.Errorf("chunk %s: %w: zstd: %v", id, ErrCorrupt, err)
		}
	default:
		return nil, fmt.Errorf("chunk %s: %w: unknown codec %d", id, ErrCorrupt, h.Codec)
	}
	if got := SumChunk(out); got != id {
		return nil, &CorruptError{ID: id, Got: got}
	}
	return out, nil
}
