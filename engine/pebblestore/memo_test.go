package pebblestore_test

import (
	"bytes"
	"crypto/md5"
	"crypto/sha512"
	"testing"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
)

// The store remembers ingested streams across a restart; an upload of the
// same content through it hashes nothing and gets the same digests; when
// GC collects the content, the store forgets the stream.
func TestStoreRemembersStreamsUntilCollected(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	s, err := pebblestore.Open(pebblestore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.DefaultIngestConfig()
	cfg.Memo, cfg.CheckpointEvery = s, 1<<20
	g, err := engine.NewIngester(s, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(5<<20+100, 70)
	first, err := g.Ingest(ctx, bytes.NewReader(data), engine.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if first.Known || s.RememberedStreams() != 1 {
		t.Fatalf("first ingest: known %v, %d streams remembered", first.Known, s.RememberedStreams())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, pebblestore.Config{Dir: dir})
	if s.RememberedStreams() != 1 {
		t.Fatalf("after reopening: %d streams remembered", s.RememberedStreams())
	}
	ds, err := s.StreamsStartingWith(ctx, first.Manifest.Chunks[0].ID, 8)
	if err != nil || len(ds) != 1 {
		t.Fatalf("streams starting with the first chunk: %v, %v", ds, err)
	}
	d := ds[0]
	if d.Root != first.Root || d.Size != first.Size || len(d.Hashes[engine.HashMD5].States) != 5 || !bytes.Equal(d.Hashes[engine.HashSHA512].Sum, first.OSHash) {
		t.Fatalf("remembered %+v", d)
	}
	cfg.Memo = s
	g, err = engine.NewIngester(s, nil, cfg)
	if err != nil {
		t.Fatal(err)
	}
	again, err := g.Ingest(ctx, bytes.NewReader(data), engine.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantMD5, wantSHA := md5.Sum(data), sha512.Sum512(data)
	if !again.Known || again.HashedBytes != 0 || !bytes.Equal(again.MD5, wantMD5[:]) || !bytes.Equal(again.OSHash, wantSHA[:]) {
		t.Fatalf("again: known %v, hashed %d, md5 %x, sha512 ok %v", again.Known, again.HashedBytes, again.MD5, bytes.Equal(again.OSHash, wantSHA[:]))
	}

	// Nothing refers to the content any more: GC deletes the root, and the
	// stream goes with it.
	gc := engine.NewCollector(noImages{}, s, engine.NewPins(), engine.GCConfig{}, nil)
	if _, err := gc.Collect(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.RememberedStreams(); n != 0 {
		t.Fatalf("%d streams remembered after their content was collected", n)
	}
	if ds, err := s.StreamsStartingWith(ctx, first.Manifest.Chunks[0].ID, 8); err != nil || len(ds) != 0 {
		t.Fatalf("after GC: %d streams, %v", len(ds), err)
	}
	third, err := g.Ingest(ctx, bytes.NewReader(data), engine.IngestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if third.Known || !bytes.Equal(third.MD5, wantMD5[:]) {
		t.Fatalf("after GC: known %v, md5 %x", third.Known, third.MD5)
	}
}

// Digests of other algorithms merge into one entry; the number of
// entries is bounded, the least recently remembered going first.
func TestStoreStreamMemoMergesAndIsBounded(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, pebblestore.Config{})
	var first, root engine.ChunkID
	first[0], root[0] = 1, 2
	put := func(root engine.ChunkID, name string, sum byte) {
		t.Helper()
		err := s.RememberStream(ctx, engine.StreamDigests{Root: root, First: first, Size: 10, Every: 1 << 20,
			Hashes: map[string]engine.StreamHash{name: {Sum: []byte{sum}}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	put(root, engine.HashMD5, 5)
	put(root, engine.HashSHA256, 6)
	ds, err := s.StreamsStartingWith(ctx, first, 8)
	if err != nil || len(ds) != 1 || len(ds[0].Hashes) != 2 || ds[0].Hashes[engine.HashMD5].Sum[0] != 5 {
		t.Fatalf("merged entry: %+v, %v", ds, err)
	}
	for i := range pebblestore.MaxRememberedStreams + 10 {
		var r engine.ChunkID
		r[0], r[1], r[2] = 3, byte(i), byte(i>>8)
		put(r, engine.HashMD5, 1)
	}
	if n := s.RememberedStreams(); n != pebblestore.MaxRememberedStreams {
		t.Fatalf("%d streams remembered, want the bound %d", n, pebblestore.MaxRememberedStreams)
	}
	ds, err = s.StreamsStartingWith(ctx, first, pebblestore.MaxRememberedStreams+100)
	if err != nil || len(ds) != pebblestore.MaxRememberedStreams {
		t.Fatalf("%d entries under the first chunk, %v", len(ds), err)
	}
	for _, d := range ds {
		if d.Root == root {
			t.Fatal("the least recently remembered entry was kept")
		}
	}
	if err := s.ForgetStream(ctx, ds[0].Root); err != nil || s.RememberedStreams() != pebblestore.MaxRememberedStreams-1 {
		t.Fatalf("forget: %v, %d left", err, s.RememberedStreams())
	}
}
