package engine

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
)

// ChunkRef is one chunk of an image: its ID (ZeroChunk for a zero run that
// is not stored), its position and its uncompressed length.
type ChunkRef struct {
	ID     ChunkID
	Offset int64
	Size   uint32
}

// Manifest is an image's content: its chunks in offset order, contiguous
// from 0 to Size. It is immutable once committed.
type Manifest struct {
	Size   int64
	Chunks []ChunkRef
}

// Find returns the index of the chunk holding byte off, or len(Chunks) if
// off is at or beyond Size.
func (m *Manifest) Find(off int64) int {
	if off >= m.Size {
		return len(m.Chunks)
	}
	return sort.Search(len(m.Chunks), func(i int) bool {
		c := m.Chunks[i]
		return c.Offset+int64(c.Size) > off
	})
}

// Manifests are stored as content-addressed data in the chunk store, so an
// image record holds only the ID of the manifest's root:
//
//	page: "MMP1" | n uint32 | n × (ChunkID [32]byte, size uint32)
//	root: "MMR1" | size int64 | chunks uint64 | pages uint32 | pages × ChunkID
//
// Pages hold up to manifestPageEntries refs (~1.4 MiB), so a 100 GiB image
// at a 64 KiB average chunk needs ~57 pages and a root of under 2 KiB.
const (
	manifestPageEntries = 40000
	manifestEntryLen    = 36
)

var (
	pageMagic = [4]byte{'M', 'M', 'P', '1'}
	rootMagic = [4]byte{'M', 'M', 'R', '1'}
)

// ManifestBlobs encodes m into pages and a root. It returns the root's ID
// and every blob (pages first, root last) to be stored under its own ID.
func ManifestBlobs(m *Manifest) (root ChunkID, blobs []Blob) {
	var pageIDs []ChunkID
	for start := 0; start < len(m.Chunks) || (start == 0 && len(m.Chunks) == 0); start += manifestPageEntries {
		end := min(start+manifestPageEntries, len(m.Chunks))
		page := make([]byte, 8, 8+(end-start)*manifestEntryLen)
		copy(page, pageMagic[:])
		binary.LittleEndian.PutUint32(page[4:], uint32(end-start))
		for _, c := range m.Chunks[start:end] {
			page = append(page, c.ID[:]...)
			page = binary.LittleEndian.AppendUint32(page, c.Size)
		}
		id := SumChunk(page)
		pageIDs = append(pageIDs, id)
		blobs = append(blobs, Blob{ID: id, Data: page})
		if len(m.Chunks) == 0 {
			break
		}
	}
	r := make([]byte, 0, 24+len(pageIDs)*32)
	r = append(r, rootMagic[:]...)
	r = binary.LittleEndian.AppendUint64(r, uint64(m.Size))
	r = binary.LittleEndian.AppendUint64(r, uint64(len(m.Chunks)))
	r = binary.LittleEndian.AppendUint32(r, uint32(len(pageIDs)))
	for _, id := range pageIDs {
		r = append(r, id[:]...)
	}
	root = SumChunk(r)
	blobs = append(blobs, Blob{ID: root, Data: r})
	return root, blobs
}

// Blob is a content-addressed byte string.
type Blob struct {
	ID   ChunkID
	Data []byte
}

// manifestRoot is a decoded root blob.
type manifestRoot struct {
	size   int64
	chunks uint64
	pages  []ChunkID
}

func decodeManifestRoot(id ChunkID, b []byte) (manifestRoot, error) {
	var r manifestRoot
	if len(b) < 24 || [4]byte(b[:4]) != rootMagic {
		return r, fmt.Errorf("manifest root %s: %w: bad header", id, ErrCorrupt)
	}
	r.size = int64(binary.LittleEndian.Uint64(b[4:]))
	r.chunks = binary.LittleEndian.Uint64(b[12:])
	n := int(binary.LittleEndian.Uint32(b[20:]))
	if len(b) != 24+32*n {
		return r, fmt.Errorf("manifest root %s: %w: %d pages in %d bytes", id, ErrCorrupt, n, len(b))
	}
	r.pages = make([]ChunkID, n)
	for i := range r.pages {
		copy(r.pages[i][:], b[24+32*i:])
	}
	return r, nil
}

// ManifestBlobIDs returns the IDs of the root and pages that store the
// manifest rooted at root (what GC must keep besides the data chunks).
func ManifestBlobIDs(ctx context.Context, cs ChunkStore, root ChunkID) ([]ChunkID, error) {
	b, err := cs.Get(ctx, root, nil)
	if err != nil {
		return nil, fmt.Errorf("load manifest root %s: %w", root, err)
	}
	r, err := decodeManifestRoot(root, b)
	if err != nil {
		return nil, err
	}
	return append([]ChunkID{root}, r.pages...), nil
}

// StoreManifest puts m's pages and root into cs and returns the root ID.
// It does not Sync.
func StoreManifest(ctx context.Context, cs ChunkStore, m *Manifest) (ChunkID, error) {
	root, blobs := ManifestBlobs(m)
	for _, b := range blobs {
		if err := cs.Put(ctx, b.ID, b.Data); err != nil {
			return ChunkID{}, fmt.Errorf("store manifest %s: %w", root, err)
		}
	}
	return root, nil
}

// LoadManifest reads and verifies the manifest rooted at root.
func LoadManifest(ctx context.Context, cs ChunkStore, root ChunkID) (*Manifest, error) {
	b, err := cs.Get(ctx, root, nil)
	if err != nil {
		return nil, fmt.Errorf("load manifest root %s: %w", root, err)
	}
	r, err := decodeManifestRoot(root, b)
	if err != nil {
		return nil, err
	}
	m := &Manifest{Size: r.size, Chunks: make([]ChunkRef, 0, r.chunks)}
	var off int64
	var buf []byte
	for _, pid := range r.pages {
		buf, err = cs.Get(ctx, pid, buf)
		if err != nil {
			return nil, fmt.Errorf("load manifest %s page %s: %w", root, pid, err)
		}
		if len(buf) < 8 || [4]byte(buf[:4]) != pageMagic {
			return nil, fmt.Errorf("manifest page %s: %w: bad header", pid, ErrCorrupt)
		}
		n := int(binary.LittleEndian.Uint32(buf[4:]))
		if len(buf) != 8+n*manifestEntryLen {
			return nil, fmt.Errorf("manifest page %s: %w: %d entries in %d bytes", pid, ErrCorrupt, n, len(buf))
		}
		for i := 0; i < n; i++ {
			e := buf[8+i*manifestEntryLen:]
			var c ChunkRef
			copy(c.ID[:], e[:32])
			c.Size = binary.LittleEndian.Uint32(e[32:])
			c.Offset = off
			off += int64(c.Size)
			m.Chunks = append(m.Chunks, c)
		}
	}
	if uint64(len(m.Chunks)) != r.chunks || off != r.size {
		return nil, fmt.Errorf("manifest %s: %w: %d chunks, %d bytes; root says %d, %d",
			root, ErrCorrupt, len(m.Chunks), off, r.chunks, r.size)
	}
	return m, nil
}
