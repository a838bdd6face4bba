package engine

import (
	"context"
	"fmt"
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

// Usage is the storage report for an API or CLI user.
type Usage struct {
	Store StoreUsage `json:"store"`
	// Images and LogicalBytes count images with data (not deleted) and
	// the sum of their sizes.
	Images       int64 `json:"images"`
	LogicalBytes int64 `json:"logical_bytes"`
	// DedupRatio is LogicalBytes / UniqueBytes; CompressionRatio is
	// UniqueBytes / StoredBytes.
	DedupRatio       float64 `json:"dedup_ratio"`
	CompressionRatio float64 `json:"compression_ratio"`
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

// Usage reports storage use. It walks the whole store: an operator's
// command, not a hot path.
func (s *Service) Usage(ctx context.Context) (any, error) {
	gs, ok := s.chunks.(GCStore)
	if !ok {
		return nil, fmt.Errorf("usage: %w: the chunk store cannot list its chunks", ErrUnavailable)
	}
	su, err := MeasureStore(ctx, gs)
	if err != nil {
		return nil, err
	}
	u := Usage{Store: su}
	imgs, err := s.List(LocalRead(ctx), func(img *Image) bool { return img.HasData() })
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		u.Images++
		if img.Size != nil {
			u.LogicalBytes += *img.Size
		}
	}
	if su.UniqueBytes > 0 {
		u.DedupRatio = float64(u.LogicalBytes) / float64(su.UniqueBytes)
	}
	if su.StoredBytes > 0 {
		u.CompressionRatio = float64(su.UniqueBytes) / float64(su.StoredBytes)
	}
	return u, nil
}
