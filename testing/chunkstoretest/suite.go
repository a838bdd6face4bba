package chunkstoretest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
)

// EncodedStore is the optional capability the corruption tests use: moving
// chunks in their stored encoding.
type EncodedStore interface {
	GetEncoded(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error)
	PutEncoded(ctx context.Context, id engine.ChunkID, enc []byte) error
}

// Run runs the conformance suite. newStore returns an empty store; it is
// called once per subtest and the store is closed by the caller's cleanup.
func Run(t *testing.T, newStore func(t *testing.T) engine.GCStore) {
	t.Run("PutGetRoundTrip", func(t *testing.T) { testRoundTrip(t, newStore(t)) })
	t.Run("Missing", func(t *testing.T) { testMissing(t, newStore(t)) })
	t.Run("PutIsIdempotent", func(t *testing.T) { testIdempotent(t, newStore(t)) })
	t.Run("GetReusesBuffer", func(t *testing.T) { testReuse(t, newStore(t)) })
	t.Run("ListAndDelete", func(t *testing.T) { testListDelete(t, newStore(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, newStore(t)) })
	t.Run("Corruption", func(t *testing.T) { testCorruption(t, newStore(t)) })
}

// Payloads returns chunks of the kinds images hold: random (stored raw),
// text (compressible), one byte, and a maximal chunk.
func Payloads(seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 1))
	rnd := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	var text bytes.Buffer
	for i := 0; text.Len() < 70000; i++ {
		fmt.Fprintf(&text, "config line %d = value %d\n", i, int(seed)+i)
	}
	return [][]byte{rnd(64 << 10), text.Bytes(), {byte(seed) | 1}, rnd(256 << 10), rnd(4096)}
}

func put(t *testing.T, s engine.ChunkStore, data []byte) engine.ChunkID {
	t.Helper()
	id := engine.SumChunk(data)
	if err := s.Put(t.Context(), id, data); err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
	return id
}

func testRoundTrip(t *testing.T, s engine.GCStore) {
	ctx := t.Context()
	for _, p := range Payloads(1) {
		id := put(t, s, p)
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, id, nil)
		if err != nil {
			t.Fatalf("get %s: %v", id, err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("get %s: %d bytes differ from the %d put", id, len(got), len(p))
		}
		if ok, err := s.Has(ctx, id); err != nil || !ok {
			t.Fatalf("has %s = %v, %v after put", id, ok, err)
		}
	}
}

func testMissing(t *testing.T, s engine.GCStore) {
	id := engine.SumChunk([]byte("never stored"))
	if _, err := s.Get(t.Context(), id, nil); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("get of a missing chunk: %v, want ErrNotFound", err)
	}
	if ok, err := s.Has(t.Context(), id); err != nil || ok {
		t.Fatalf("has of a missing chunk = %v, %v", ok, err)
	}
	if err := s.DeleteChunks(t.Context(), []engine.ChunkID{id}); err != nil {
		t.Fatalf("deleting an absent chunk: %v", err)
	}
}

func testIdempotent(t *testing.T, s engine.GCStore) {
	p := Payloads(2)[1]
	id := put(t, s, p)
	put(t, s, p)
	n := 0
	for info, err := range s.ListChunks(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		if info.ID == id {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("chunk listed %d times after two puts", n)
	}
}

func testReuse(t *testing.T, s engine.GCStore) {
	ps := Payloads(3)
	buf := make([]byte, 0, 512<<10)
	for _, p := range ps {
		id := put(t, s, p)
		got, err := s.Get(t.Context(), id, buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, p) {
			t.Fatalf("get into a reused buffer returned wrong bytes")
		}
		if &got[0] != &buf[:1][0] {
			t.Fatalf("get did not reuse a large enough buffer")
		}
	}
}

func testListDelete(t *testing.T, s engine.GCStore) {
	ctx := t.Context()
	want := map[engine.ChunkID]int{}
	for _, p := range append(Payloads(4), Payloads(5)...) {
		want[put(t, s, p)] = len(p)
	}
	got := map[engine.ChunkID]engine.ChunkInfo{}
	for info, err := range s.ListChunks(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got[info.ID] = info
	}
	if len(got) != len(want) {
		t.Fatalf("listed %d chunks, stored %d", len(got), len(want))
	}
	var del []engine.ChunkID
	for id, size := range want {
		info := got[id]
		if int(info.Size) != size || info.StoredSize == 0 || info.WrittenAt == 0 {
			t.Fatalf("chunk %s listed as %+v, size %d", id, info, size)
		}
		if len(del) < len(want)/2 {
			del = append(del, id)
		}
	}
	if err := s.DeleteChunks(ctx, del); err != nil {
		t.Fatal(err)
	}
	for _, id := range del {
		if _, err := s.Get(ctx, id, nil); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("get after delete: %v", err)
		}
		delete(want, id)
	}
	n := 0
	for info, err := range s.ListChunks(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := want[info.ID]; !ok {
			t.Fatalf("deleted chunk %s still listed", info.ID)
		}
		n++
	}
	if n != len(want) {
		t.Fatalf("listed %d chunks after delete, want %d", n, len(want))
	}
}

func testConcurrent(t *testing.T, s engine.GCStore) {
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				for _, p := range Payloads(uint64(100 + (g+i)%6)) {
					id := engine.SumChunk(p)
					if err := s.Put(ctx, id, p); err != nil {
						errs <- err
						return
					}
					got, err := s.Get(ctx, id, nil)
					if err != nil || !bytes.Equal(got, p) {
						errs <- fmt.Errorf("get %s after put: %v", id, err)
						return
					}
				}
			}
			errs <- s.Sync(ctx)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func testCorruption(t *testing.T, s engine.GCStore) {
	es, ok := s.(EncodedStore)
	if !ok {
		t.Fatalf("%T does not implement chunkstoretest.EncodedStore: corruption cannot be tested", s)
	}
	ctx := t.Context()
	for i, p := range Payloads(6) {
		id := put(t, s, p)
		enc, err := es.GetEncoded(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		bad := append([]byte(nil), enc...)
		bad[len(bad)-1-i%len(p)] ^= 0x20
		if err := es.PutEncoded(ctx, id, bad); err != nil {
			t.Fatal(err)
		}
		_, err = s.Get(ctx, id, nil)
		if !errors.Is(err, engine.ErrCorrupt) {
			t.Fatalf("get of a chunk with a flipped byte: %v, want ErrCorrupt", err)
		}
		var ce *engine.CorruptError
		if errors.As(err, &ce) && ce.ID != id {
			t.Fatalf("corrupt error names %s, want %s", ce.ID, id)
		}
		if !bytes.Contains([]byte(err.Error()), []byte(id.String())) {
			t.Fatalf("corrupt error %q does not name chunk %s", err, id)
		}
	}
}
