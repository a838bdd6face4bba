package replication

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
)

// A claim on a peer keeps the chunks pinned there while the claimant's
// upload pins them (renewed past several TTLs), and lapses within about a
// TTL once the upload has released them.
func TestClaimLeasesLastAsLongAsTheUpload(t *testing.T) {
	const ttl = 600 * time.Millisecond
	peerPins := engine.NewPins()
	peer := NewPeer(Config{ClaimTTL: ttl}, chunkstoretest.NewMemStore(), peerPins)
	t.Cleanup(func() { peer.Close() })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != pathClaim {
			http.NotFound(w, r)
			return
		}
		b, err := peer.ClaimChunks(r.Context(), r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	addr := strings.TrimPrefix(srv.URL, "http://")

	uploaderPins := engine.NewPins()
	cfg := Config{SelfID: "uploader", ClaimTTL: ttl, LocalPins: uploaderPins}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := &client{hc: http.DefaultClient}
	cl := newClaims(cfg, c.claim)
	t.Cleanup(cl.close)

	chunks := ids(3)
	upload := uploaderPins.Begin()
	for _, id := range chunks {
		if err := upload.Pin(id, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.claim(context.Background(), addr, chunks); err != nil {
		t.Fatal(err)
	}
	cl.record(addr, chunks)

	// Four TTLs later the upload still runs: the peer still pins them.
	end := time.Now().Add(4 * ttl)
	for time.Now().Before(end) {
		if !peerPins.IsPinned(chunks[0]) {
			t.Fatal("the peer let a claim of a running upload lapse")
		}
		time.Sleep(ttl / 10)
	}
	upload.End()
	deadline := time.Now().Add(10 * ttl)
	for peerPins.Pinned() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d chunks still pinned on the peer %s after the upload ended", peerPins.Pinned(), 10*ttl)
		}
		time.Sleep(ttl / 10)
	}
}
