package engine

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleDigests() StreamDigests {
	return StreamDigests{Root: ChunkID{1}, First: ChunkID{2}, Size: 3 << 20, RememberedAt: 42, Every: 1 << 20,
		Hashes: map[string]StreamHash{
			HashMD5:    {Sum: bytes.Repeat([]byte{7}, 16), States: [][]byte{{1, 2}, {3}, {4, 5, 6}}},
			HashSHA512: {Sum: bytes.Repeat([]byte{8}, 64), States: [][]byte{{9}, {10}, {11}}},
		}}
}

func TestStreamDigestsRoundTrip(t *testing.T) {
	d := sampleDigests()
	enc := EncodeStreamDigests(d)
	got, err := DecodeStreamDigests(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, d) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, d)
	}
	enc[len(enc)-1] ^= 0xff // the decoded value must not alias the input
	if !reflect.DeepEqual(got, d) {
		t.Fatal("decoded digests alias the encoding")
	}
	for n := range len(enc) {
		if _, err := DecodeStreamDigests(enc[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	// Merging: another algorithm is added, a refresh without hashes keeps them.
	add := StreamDigests{Root: d.Root, First: d.First, Size: d.Size, Every: d.Every, RememberedAt: 50,
		Hashes: map[string]StreamHash{HashSHA256: {Sum: []byte{1}}}}
	m := MergeStreamDigests(d, add)
	if len(m.Hashes) != 3 || m.RememberedAt != 50 {
		t.Fatalf("merge: %+v", m)
	}
	m = MergeStreamDigests(m, StreamDigests{Root: d.Root, First: d.First, Size: d.Size, RememberedAt: 60})
	if len(m.Hashes) != 3 || m.RememberedAt != 60 || m.Every != d.Every {
		t.Fatalf("refresh: %+v", m)
	}
	// Another checkpoint interval replaces what was there.
	add.Every = 2 << 20
	if m = MergeStreamDigests(d, add); len(m.Hashes) != 1 {
		t.Fatalf("merge across intervals kept %d hashes", len(m.Hashes))
	}
}

func FuzzDecodeStreamDigests(f *testing.F) {
	f.Add(EncodeStreamDigests(sampleDigests()))
	f.Add([]byte("MSD1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeStreamDigests(b)
		if err != nil {
			return
		}
		again, err := DecodeStreamDigests(EncodeStreamDigests(d))
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("re-encoding a decoded value: %v", err)
		}
	})
}
