package chunker

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func cutsByChunker(t *testing.T, data []byte, p Params) []int {
	t.Helper()
	ch, err := New(bytes.NewReader(data), p)
	if err != nil {
		t.Fatal(err)
	}
	var cuts []int
	var off int64
	for {
		c, err := ch.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c.Offset != off {
			t.Fatalf("chunk at %d, want %d", c.Offset, off)
		}
		if !bytes.Equal(c.Data, data[off:off+int64(len(c.Data))]) {
			t.Fatalf("chunk at %d has wrong bytes", off)
		}
		off += int64(len(c.Data))
		cuts = append(cuts, int(off))
	}
	if off != int64(len(data)) {
		t.Fatalf("chunks cover %d bytes, want %d", off, len(data))
	}
	return cuts
}

func cutsByCutter(t *testing.T, data []byte, p Params, piece int) []int {
	t.Helper()
	c, err := NewCutter(p)
	if err != nil {
		t.Fatal(err)
	}
	var cuts []int
	pos := 0
	for start := 0; start < len(data); start += piece {
		buf := data[start:min(start+piece, len(data))]
		for len(buf) > 0 {
			n, end := c.Scan(buf)
			pos += n
			buf = buf[n:]
			if end {
				cuts = append(cuts, pos)
			}
		}
	}
	if len(cuts) == 0 || cuts[len(cuts)-1] != len(data) {
		cuts = append(cuts, len(data))
	}
	return cuts
}

func TestCutterMatchesChunkerForAnyPieceSize(t *testing.T) {
	data := randomBytes(8<<20, 1)
	for _, p := range []Params{DefaultParams, PlainParams} {
		want := cutsByChunker(t, data, p)
		for _, piece := range []int{1 << 20, 4093, 300 << 10, 65536, 8 << 20} {
			got := cutsByCutter(t, data, p, piece)
			if len(got) != len(want) {
				t.Fatalf("align %d piece %d: %d cuts, want %d", p.Align, piece, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("align %d piece %d: cut %d at %d, want %d", p.Align, piece, i, got[i], want[i])
				}
			}
		}
	}
}

func TestChunkSizesWithinBoundsAndNearAverage(t *testing.T) {
	data := randomBytes(16<<20, 2)
	for _, p := range []Params{DefaultParams, PlainParams} {
		cuts := cutsByChunker(t, data, p)
		prev := 0
		for i, c := range cuts {
			size := c - prev
			if size > p.Max || (size < p.Min && i != len(cuts)-1) {
				t.Fatalf("chunk %d has size %d outside [%d,%d]", i, size, p.Min, p.Max)
			}
			if p.Align > 0 && i != len(cuts)-1 && c%p.Align != 0 {
				t.Fatalf("chunk %d ends at %d, not aligned to %d", i, c, p.Align)
			}
			prev = c
		}
		avg := len(data) / len(cuts)
		if avg < p.Avg/2 || avg > p.Avg*2 {
			t.Fatalf("align %d: mean chunk %d far from avg %d", p.Align, avg, p.Avg)
		}
		t.Logf("align %d: %d chunks, mean %d", p.Align, len(cuts), avg)
	}
}

func TestInsertionMovesFewBoundaries(t *testing.T) {
	data := randomBytes(16<<20, 3)
	edited := append(append(append([]byte{}, data[:5<<20]...), []byte("inserted bytes")...), data[5<<20:]...)
	a := cutsByChunker(t, data, PlainParams)
	b := cutsByChunker(t, edited, PlainParams)
	set := map[int]bool{}
	for _, c := range a {
		set[c] = true
	}
	shared := 0
	for _, c := range b {
		if set[c] || set[c-len("inserted bytes")] {
			shared++
		}
	}
	if shared < len(a)-3 {
		t.Fatalf("only %d of %d boundaries survived a 14-byte insertion", shared, len(a))
	}
}

func TestValidate(t *testing.T) {
	bad := []Params{
		{Min: 10, Avg: 64, Max: 128},
		{Min: 1024, Avg: 1000, Max: 4096},
		{Min: 1024, Avg: 4096, Max: 4096},
		{Min: 1024, Avg: 3000, Max: 8192},
		{Min: 1024, Avg: 4096, Max: 8192, Align: 3000},
		{Min: 1024, Avg: 4096, Max: 8192, Normalization: 4},
	}
	for _, p := range bad {
		if p.Validate() == nil {
			t.Errorf("%+v: Validate accepted it", p)
		}
	}
	if err := DefaultParams.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNoAllocationPerChunk(t *testing.T) {
	data := randomBytes(4<<20, 8)
	for _, p := range []Params{DefaultParams, PlainParams} {
		c, err := NewCutter(p)
		if err != nil {
			t.Fatal(err)
		}
		allocs := testing.AllocsPerRun(5, func() {
			c.Reset()
			for rest := data; len(rest) > 0; {
				n, _ := c.Scan(rest)
				rest = rest[n:]
			}
		})
		if allocs != 0 {
			t.Fatalf("align %d: Cutter allocates %.1f times per stream", p.Align, allocs)
		}
		// A Chunker allocates itself, its Cutter and its buffer, then
		// nothing per chunk (about 60 chunks here).
		n := 0
		r := bytes.NewReader(data)
		allocs = testing.AllocsPerRun(3, func() {
			r.Reset(data)
			ch, err := New(r, p)
			if err != nil {
				panic(err)
			}
			for n = 0; ; n++ {
				if _, err := ch.Next(); err != nil {
					break
				}
			}
		})
		if allocs > 3 || n < 16 {
			t.Fatalf("align %d: Chunker allocates %.1f times over %d chunks", p.Align, allocs, n)
		}
	}
}
