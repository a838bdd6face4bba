package engine_test

import (
	"testing"
)

func TestUsagePerImageUniqueBytes(t *testing.T) {
	e := newEnv(t, nil)
	shared := randomData(1<<20, 30)
	a := append(append(append([]byte{}, shared...), randomData(512<<10, 31)...), make([]byte, 256<<10)...)
	b := append(append([]byte{}, shared...), randomData(256<<10, 32)...)
	ia, ib := e.upload(t, a), e.upload(t, b)
	u, err := e.svc.StorageUsage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if u.Images != 2 || u.LogicalBytes != int64(len(a)+len(b)) {
		t.Fatalf("usage %+v", u)
	}
	per := map[string]int64{}
	for _, iu := range u.PerImage {
		per[iu.ID] = iu.UniqueBytes
		if iu.UniqueStoredBytes < iu.UniqueBytes*9/10 { // random data barely compresses
			t.Fatalf("image %s: unique stored %d for %d unique bytes", iu.ID, iu.UniqueStoredBytes, iu.UniqueBytes)
		}
	}
	// Chunk boundaries near the end of the shared prefix may differ, so
	// allow one maximal chunk of slack on each side.
	slack := int64(64 << 10)
	if d := per[ia.ID] - 512<<10; d < 0 || d > 2*slack {
		t.Fatalf("image A unique bytes %d, want ~%d", per[ia.ID], 512<<10)
	}
	if d := per[ib.ID] - 256<<10; d < 0 || d > 2*slack {
		t.Fatalf("image B unique bytes %d, want ~%d", per[ib.ID], 256<<10)
	}
	if u.DedupRatio < 1.3 || u.CompressionRatio < 0.9 {
		t.Fatalf("ratios %+v", u)
	}
}
