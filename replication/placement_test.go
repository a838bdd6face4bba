package replication

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
)

func members(n int) []Member {
	var ms []Member
	for i := range n {
		ms = append(ms, Member{ID: fmt.Sprintf("node-%d", i), Addr: fmt.Sprintf("10.0.0.%d:9292", i), Storage: true})
	}
	return ms
}

func ids(n int) []engine.ChunkID {
	out := make([]engine.ChunkID, n)
	for i := range out {
		out[i] = engine.SumChunk(fmt.Appendf(nil, "chunk %d", i))
	}
	return out
}

// TestRankingIsBalancedAndStable: every node owns about R/N of the
// chunks; adding a node moves only the chunks it now owns; order of the
// member list does not matter; non-storage members never own.
func TestRankingIsBalancedAndStable(t *testing.T) {
	const n, r, chunks = 5, 3, 20000
	ms := members(n)
	rk := NewRanking(ms)
	owned := map[string]int{}
	for _, id := range ids(chunks) {
		for _, o := range rk.Owners(id, r) {
			owned[o.ID]++
		}
	}
	want := float64(chunks) * r / n
	for id, k := range owned {
		if dev := (float64(k) - want) / want; dev > 0.05 || dev < -0.05 {
			t.Errorf("%s owns %d chunks, want %.0f ±5%%", id, k, want)
		}
	}
	// Reversed member order: same owners.
	rev := make([]Member, n)
	for i, m := range ms {
		rev[n-1-i] = m
	}
	rk2 := NewRanking(append(rev, Member{ID: "mount-host", Addr: "x", Storage: false}))
	// A sixth node: every chunk keeps at least R-1 of its owners.
	rk6 := NewRanking(append(members(n), Member{ID: "node-new", Addr: "y", Storage: true}))
	moved := 0
	for _, id := range ids(chunks) {
		a, b := rk.Owners(id, r), rk2.Owners(id, r)
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("owners depend on member order: %v vs %v", a, b)
			}
		}
		c := rk6.Owners(id, r)
		kept := 0
		for _, o := range c {
			for _, p := range a {
				if o.ID == p.ID {
					kept++
				}
			}
		}
		if kept < r-1 {
			t.Fatalf("joining one node moved %d owners of a chunk", r-kept)
		}
		if kept == r-1 {
			moved++
			if c[0].ID != "node-new" && c[1].ID != "node-new" && c[2].ID != "node-new" {
				t.Fatalf("a changed chunk must move to the new node")
			}
		}
	}
	if frac := float64(moved) / chunks; frac < 0.45 || frac > 0.55 { // R/(N+1) = 0.5
		t.Errorf("a join moved %.2f of the chunks, want ≈0.5", frac)
	}
	// Fewer nodes than R: every node owns everything.
	if got := NewRanking(members(2)).Owners(ids(1)[0], 3); len(got) != 2 {
		t.Fatalf("2 nodes, R=3: %d owners", len(got))
	}
}

func TestFramesRoundTrip(t *testing.T) {
	var body []byte
	datas := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte("z"), 300<<10)}
	for _, d := range datas {
		body = appendFrame(body, engine.SumChunk(d), d)
	}
	i := 0
	err := readFrames(bytes.NewReader(body), func(id engine.ChunkID, data []byte) error {
		if id != engine.SumChunk(datas[i]) || !bytes.Equal(data, datas[i]) {
			t.Fatalf("frame %d differs", i)
		}
		i++
		return nil
	})
	if err != nil || i != len(datas) {
		t.Fatalf("read %d frames: %v", i, err)
	}
	if err := readFrames(bytes.NewReader(body[:len(body)-1]), func(engine.ChunkID, []byte) error { return nil }); err == nil {
		t.Fatal("truncated frames accepted")
	}
}
