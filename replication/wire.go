package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/mosaicimg/mosaic/engine"
)

// Wire formats of the chunk endpoints (served by package api, which passes
// the bodies through):
//
//	GET  /internal/chunks/{id}   reply: the chunk's uncompressed bytes
//	POST /internal/chunks/get    body: n × ChunkID; reply: frames of those present
//	POST /internal/chunks/claim  body: n × ChunkID; reply: n bytes, 1 = present
//	POST /internal/chunks/put    body: frames ChunkID | uint32 length | bytes; reply: uint32 stored
//	POST /internal/chunks/sync   reply: 204 once every received chunk is durable
//	GET  /internal/node/status   reply: NodeStatus as JSON
const (
	pathChunk  = "/internal/chunks/"
	pathGet    = "/internal/chunks/get"
	pathClaim  = "/internal/chunks/claim"
	pathPut    = "/internal/chunks/put"
	pathSync   = "/internal/chunks/sync"
	pathStatus = "/internal/node/status"

	// maxChunk bounds one frame (chunks are at most a few hundred KiB;
	// manifest pages up to ~1.4 MiB).
	maxChunk = 8 << 20
)

func appendFrame(dst []byte, id engine.ChunkID, data []byte) []byte {
	dst = append(dst, id[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(data)))
	return append(dst, data...)
}

// readFrames calls fn for each frame in r.
func readFrames(r io.Reader, fn func(id engine.ChunkID, data []byte) error) error {
	var hdr [36]byte
	buf := make([]byte, 0, 256<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read frame header: %w: %v", engine.ErrInvalid, err)
		}
		n := binary.BigEndian.Uint32(hdr[32:])
		if n > maxChunk {
			return fmt.Errorf("frame of %d bytes: %w", n, engine.ErrInvalid)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("read frame: %w: %v", engine.ErrInvalid, err)
		}
		if err := fn(engine.ChunkID(hdr[:32]), buf); err != nil {
			return err
		}
	}
}

func readIDs(r io.Reader, limit int) ([]engine.ChunkID, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)*32+1))
	if err != nil {
		return nil, fmt.Errorf("read chunk IDs: %w", err)
	}
	if len(b)%32 != 0 || len(b) > limit*32 {
		return nil, fmt.Errorf("chunk ID list of %d bytes: %w", len(b), engine.ErrInvalid)
	}
	ids := make([]engine.ChunkID, len(b)/32)
	for i := range ids {
		ids[i] = engine.ChunkID(b[i*32 : i*32+32])
	}
	return ids, nil
}
