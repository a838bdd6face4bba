package engine

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/mosaicimg/mosaic/chunker"
)

// Readers hammer one image through a chunk cache far smaller than it, so
// chunks are evicted and their buffers recycled all the time, with every
// kind of read at once (ReadAt, CopyRange, Slices, SlicesHeld, read-ahead).
// Every byte must be right: a buffer recycled while a reader still used it
// would show up as wrong bytes (and as a race under -race).
func TestRecycledChunkBuffersNeverServeWrongBytes(t *testing.T) {
	st := newMemStore()
	g, err := NewIngester(st, nil, IngestConfig{Chunking: chunker.Params{Min: 4 << 10, Avg: 16 << 10, Max: 64 << 10, Align: 4 << 10, Normalization: 2}, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 12<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	clear(data[5<<20 : 6<<20])
	res, err := g.Ingest(context.Background(), bytes.NewReader(data), IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cache := NewChunkCache(1 << 20) // ~64 chunks of a 12 MiB image
	r := NewImageReader(res.Manifest, st, cache, DefaultReaderConfig())
	defer r.Close()

	var wg sync.WaitGroup
	errs := make(chan string, 16)
	fail := func(msg string) {
		select {
		case errs <- msg:
		default:
		}
	}
	size := int64(len(data))
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			buf := make([]byte, 1<<20)
			for range 150 {
				off := rng.Int64N(size)
				n := int(min(rng.Int64N(1<<20)+1, size-off))
				switch w % 4 {
				case 0: // ReadAt, sequential runs included
					got, err := r.ReadAt(buf[:n], off)
					if err != nil && err != io.EOF || !bytes.Equal(buf[:got], data[off:off+int64(got)]) {
						fail("ReadAt returned wrong bytes")
						return
					}
				case 1:
					var out bytes.Buffer
					if _, err := r.CopyRange(context.Background(), &out, off, int64(n)); err != nil || !bytes.Equal(out.Bytes(), data[off:off+int64(n)]) {
						fail("CopyRange returned wrong bytes")
						return
					}
				case 2: // held slices, checked before release
					vecs, got, held, err := r.SlicesHeld(context.Background(), off, n, nil)
					if err != nil && err != io.EOF {
						held.Release()
						fail(err.Error())
						return
					}
					if !bytes.Equal(bytes.Join(vecs, nil), data[off:off+int64(got)]) {
						held.Release()
						fail("SlicesHeld returned wrong bytes")
						return
					}
					held.Release()
				case 3: // kept slices, checked again much later
					vecs, got, err := r.Slices(context.Background(), off, n, nil)
					if err != nil && err != io.EOF {
						fail(err.Error())
						return
					}
					defer func() {
						if !bytes.Equal(bytes.Join(vecs, nil), data[off:off+int64(got)]) {
							fail("slices from Slices changed after other reads")
						}
					}()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Fatal(msg)
	}
	if st := cache.Stats(); st.Recycled == 0 {
		t.Fatalf("no buffer was recycled (%+v): the test proves nothing", st)
	}
}
