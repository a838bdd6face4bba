package chunker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// referenceCuts is the boundary rule written the obvious way, one byte at a
// time over the whole stream. The Cutter's lanes, skipping and aligned
// probing must give exactly these cuts.
func referenceCuts(data []byte, p Params) []int {
	maskS, maskL := p.masks()
	var fp uint64
	for range WindowSize { // the stream starts after WindowSize zero bytes
		fp = fp<<1 + gear[0]
	}
	var cuts []int
	start := 0
	for i, b := range data {
		fp = fp<<1 + gear[b]
		n := i - start + 1
		if n < p.Min {
			continue
		}
		mask := maskL
		if n <= p.Avg {
			mask = maskS
		}
		aligned := p.Align <= 1 || n%p.Align == 0
		if (aligned && fp&mask == 0) || n == p.Max {
			cuts = append(cuts, i+1)
			start = i + 1
		}
	}
	if start < len(data) {
		cuts = append(cuts, len(data))
	}
	return cuts
}

// structured returns data with the patterns that trouble chunkers: zero
// runs, a one-byte run, a short period, text, and random stretches.
func structured(n int) []byte {
	var b bytes.Buffer
	rnd := randomBytes(n, 9)
	for b.Len() < n {
		switch (b.Len() / 70000) % 5 {
		case 0:
			b.Write(rnd[b.Len() : b.Len()+min(90001, n-b.Len())])
		case 1:
			b.Write(make([]byte, 300<<10))
		case 2:
			b.Write(bytes.Repeat([]byte{0x41}, 200<<10))
		case 3:
			b.Write(bytes.Repeat([]byte("abc"), 50000))
		case 4:
			for k := 0; k < 3000; k++ {
				fmt.Fprintf(&b, "line %d of a log file with some text\n", k)
			}
		}
	}
	return b.Bytes()[:n]
}

var testParams = []Params{
	DefaultParams,
	PlainParams,
	{Min: 2 << 10, Avg: 8 << 10, Max: 64 << 10, Normalization: 0},
	{Min: 4 << 10, Avg: 16 << 10, Max: 32 << 10, Align: 1024, Normalization: 3},
	{Min: 64, Avg: 256, Max: 1024, Normalization: 1},
}

func TestCutterMatchesReference(t *testing.T) {
	inputs := map[string][]byte{"random": randomBytes(3<<20, 4), "structured": structured(3 << 20)}
	for name, data := range inputs {
		for _, p := range testParams {
			want := referenceCuts(data, p)
			if got := cutsByChunker(t, data, p); !equalInts(got, want) {
				t.Fatalf("%s %+v: Chunker gives %d cuts, reference %d (first difference %d)", name, p, len(got), len(want), firstDiff(got, want))
			}
			for _, piece := range []int{1, 63, 4093, 65536, 300 << 10} {
				if piece == 1 && len(data) > 256<<10 {
					data := data[:256<<10]
					if got, want := cutsByCutter(t, data, p, piece), referenceCuts(data, p); !equalInts(got, want) {
						t.Fatalf("%s %+v piece %d: first difference at cut %d", name, p, piece, firstDiff(got, want))
					}
					continue
				}
				if got := cutsByCutter(t, data, p, piece); !equalInts(got, want) {
					t.Fatalf("%s %+v piece %d: %d cuts, reference %d (first difference %d)", name, p, piece, len(got), len(want), firstDiff(got, want))
				}
			}
		}
	}
}

func equalInts(a, b []int) bool { return firstDiff(a, b) < 0 }

func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/golden.txt")

// TestGolden pins the boundaries: any change to the gear table, the masks
// or the rules changes chunk IDs of everything stored, and must show here.
func TestGolden(t *testing.T) {
	data := structured(8 << 20)
	var out strings.Builder
	for _, p := range []Params{DefaultParams, PlainParams} {
		cuts := referenceCuts(data, p)
		got := cutsByChunker(t, data, p)
		if !equalInts(got, cuts) {
			t.Fatalf("%+v: Chunker disagrees with the reference", p)
		}
		h := sha256.New()
		prev := 0
		for _, c := range cuts {
			h.Write(data[prev:c])
			fmt.Fprintf(h, "|%d|", c)
			prev = c
		}
		fmt.Fprintf(&out, "params %+v\ncuts %d\nfirst %v\nsha256 %s\n\n", p, len(cuts), cuts[:8], hex.EncodeToString(h.Sum(nil)))
	}
	path := filepath.Join("testdata", "golden.txt")
	if *rewrite {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGolden -rewrite to create it)", err)
	}
	if out.String() != string(want) {
		t.Fatalf("boundaries changed:\ngot:\n%s\nwant:\n%s", out.String(), want)
	}
}
