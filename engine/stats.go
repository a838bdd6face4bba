package engine

import (
	"context"
	"fmt"
	"sort"
)

// StoreUsage summarises what a chunk store holds.
type StoreUsage struct {
	// Chunks is the number of stored blobs (data chunks and manifest blobs).
	Chunks int64 `json:"chunks"`
	// UniqueBytes is their uncompressed size.
	UniqueBytes int64 `json:"unique_bytes"`
	// StoredBytes is their encoded (compressed) size.
	StoredBytes int64 `json:"stored_bytes"`
}

// ImageUsage is one image's share of the store.
type ImageUsage struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Size is the image's logical size; ZeroBytes of it are zero runs,
	// which are never stored.
	Size      int64 `json:"size"`
	ZeroBytes int64 `json:"zero_bytes"`
	// Chunks is the number of distinct stored chunks the image uses.
	Chunks int64 `json:"chunks"`
	// UniqueBytes and UniqueStoredBytes count the chunks no other image
	// uses (uncompressed and as stored): what deleting the image frees.
	UniqueBytes       int64 `json:"unique_bytes"`
	UniqueStoredBytes int64 `json:"unique_stored_bytes"`
}

// Usage is the storage report for an API or CLI user.
type Usage struct {
	Store StoreUsage `json:"store"`
	// Images and LogicalBytes count images with data (not deleted) and
	// the sum of their sizes.
	Images       int64 `json:"images"`
	LogicalBytes int64 `json:"logical_bytes"`
	// ReferencedBytes is the uncompressed size of the distinct chunks the
	// images use (UniqueBytes less garbage awaiting GC and manifests).
	ReferencedBytes int64 `json:"referenced_bytes"`
	// DedupRatio is LogicalBytes / ReferencedBytes (zero runs count as
	// deduplicated); CompressionRatio is UniqueBytes / StoredBytes.
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
	// PerImage lists every image with data, largest unique share first.
	PerImage []ImageUsage `json:"per_image"`
}

// MeasureStore walks a store and sums its chunks.
func MeasureStore(ctx context.Context, s GCStore) (StoreUsage, error) {
	var u StoreUsage
	for info, err := range s.ListChunks(ctx) {
		if err != nil {
			return u, fmt.Errorf("measure store: %w", err)
		}
		u.Chunks++
		u.UniqueBytes += int64(info.Size)
		u.StoredBytes += int64(info.StoredSize)
	}
	return u, nil
}

// Usage reports storage use. It walks the whole store and every manifest:
// an operator's command, not a hot path.
func (s *Service) Usage(ctx context.Context) (any, error) {
	return s.StorageUsage(ctx)
}

// StorageUsage is Usage with its concrete type.
func (s *Service) StorageUsage(ctx context.Context) (*Usage, error) {
	gs, ok := s.chunks.(GCStore)
	if !ok {
		return nil, fmt.Errorf("usage: %w: the chunk store cannot list its chunks", ErrUnavailable)
	}
	stored := map[ChunkID]uint32{}
	u := &Usage{PerImage: []ImageUsage{}}
	for info, err := range gs.ListChunks(ctx) {
		if err != nil {
			return nil, fmt.Errorf("usage: %w", err)
		}
		u.Store.Chunks++
		u.Store.UniqueBytes += int64(info.Size)
		u.Store.StoredBytes += int64(info.StoredSize)
		stored[info.ID] = info.StoredSize
	}
	imgs, err := s.List(LocalRead(ctx), func(img *Image) bool { return img.HasData() })
	if err != nil {
		return nil, err
	}
	type chunkUse struct {
		images int
		size   uint32
	}
	uses := map[ChunkID]*chunkUse{}
	sets := make([]map[ChunkID]uint32, len(imgs))
	for i, img := range imgs {
		m, err := s.Manifest(ctx, img.ManifestRoot)
		if err != nil {
			return nil, fmt.Errorf("usage: image %s: %w", img.ID, err)
		}
		iu := ImageUsage{ID: img.ID, Size: m.Size}
		if img.Name != nil {
			iu.Name = *img.Name
		}
		set := map[ChunkID]uint32{}
		for _, c := range m.Chunks {
			if c.ID.IsZero() {
				iu.ZeroBytes += int64(c.Size)
				continue
			}
			set[c.ID] = c.Size
		}
		for id, size := range set {
			cu := uses[id]
			if cu == nil {
				cu = &chunkUse{size: size}
				uses[id] = cu
			}
			cu.images++
		}
		iu.Chunks = int64(len(set))
		sets[i] = set
		u.PerImage = append(u.PerImage, iu)
		u.Images++
		u.LogicalBytes += m.Size
	}
	for i, set := range sets {
		for id, size := range set {
			if uses[id].images == 1 {
				u.PerImage[i].UniqueBytes += int64(size)
				u.PerImage[i].UniqueStoredBytes += int64(stored[id])
			}
		}
	}
	for _, cu := range uses {
		u.ReferencedBytes += int64(cu.size)
	}
	sort.Slice(u.PerImage, func(a, b int) bool {
		if u.PerImage[a].UniqueStoredBytes != u.PerImage[b].UniqueStoredBytes {
			return u.PerImage[a].UniqueStoredBytes > u.PerImage[b].UniqueStoredBytes
		}
		return u.PerImage[a].ID < u.PerImage[b].ID
	})
	if u.ReferencedBytes > 0 {
		u.DedupRatio = float64(u.LogicalBytes) / float64(u.ReferencedBytes)
	}
	if u.Store.StoredBytes > 0 {
		u.CompressionRatio = float64(u.Store.UniqueBytes) / float64(u.Store.StoredBytes)
	}
	return u, nil
}
