package storagee2e

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// TestCorruptChunkIsNeverServed flips one byte of a stored chunk of an
// uploaded image (the node stopped, the store edited, the node restarted)
// and checks every way out: the API answers 5xx naming the chunk, a full
// download never delivers the bad chunk's bytes, and the FUSE mount
// answers EIO, with the chunk named in the node's log.
func TestCorruptChunkIsNeverServed(t *testing.T) {
	harness.RequireTool(t, "fusermount3", "fuse3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is missing: the FUSE mount cannot be tested: %v", err)
	}
	work := t.TempDir()
	dataDir, mnt := filepath.Join(work, "data"), filepath.Join(work, "mnt")
	node := harness.StartNode(t, harness.NodeOptions{DataDir: dataDir, MountDir: mnt, Extra: []string{"--gc-interval", "0"}})
	data := randomData(8<<20, 1)
	id := createImage(t, node.URL(), "to-corrupt")
	upload(t, node.URL(), id, data)
	node.Stop()

	// Flip a byte in the middle of a data chunk that is not the first.
	s, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dataDir, "chunks")})
	if err != nil {
		t.Fatal(err)
	}
	var victim engine.ChunkID
	victimOff := -1
	for info, err := range s.ListChunks(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		b, err := s.Get(t.Context(), info.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if off := bytes.Index(data, b); off > 0 && len(b) > 1024 {
			victim, victimOff = info.ID, off
			break
		}
	}
	if victimOff < 0 {
		t.Fatal("found no data chunk of the image in the store")
	}
	enc, err := s.GetEncoded(t.Context(), victim, nil)
	if err != nil {
		t.Fatal(err)
	}
	enc[len(enc)/2] ^= 0x01
	if err := s.PutEncoded(t.Context(), victim, enc); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	node.Start()

	// A range starting in the bad chunk: 5xx, and the message names it.
	st, body := do(t, "GET", node.URL()+"/v2/images/"+id+"/file", "", nil,
		"Range", fmt.Sprintf("bytes=%d-%d", victimOff, victimOff+4095))
	if st < 500 || !strings.Contains(string(body), victim.String()) {
		t.Fatalf("range read of the corrupt chunk: %d %s; want 5xx naming chunk %s", st, body, victim)
	}
	// A whole download must stop before the bad chunk's bytes.
	req, _ := http.NewRequestWithContext(t.Context(), "GET", node.URL()+"/v2/images/"+id+"/file", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, copyErr := got.ReadFrom(resp.Body)
	resp.Body.Close()
	if copyErr == nil || got.Len() > victimOff {
		t.Fatalf("full download: %d bytes, error %v; want a cut connection before offset %d", got.Len(), copyErr, victimOff)
	}
	if !bytes.Equal(got.Bytes(), data[:got.Len()]) {
		t.Fatal("full download served wrong bytes before the corrupt chunk")
	}

	// Through the mount: EIO at the bad chunk, good bytes before it.
	f, err := os.Open(filepath.Join(mnt, "images", id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatalf("read before the corrupt chunk: %v", err)
	}
	_, err = f.ReadAt(buf, int64(victimOff))
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("mount read of the corrupt chunk: %v, want EIO", err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(node.Log(), "fuse operation failed") || !strings.Contains(node.Log(), victim.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("node log does not name the corrupt chunk %s", victim)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
