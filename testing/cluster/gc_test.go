package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"
)

// adminGC runs a collection on node i with the given grace period through
// the node's loopback storage endpoint (what `mosaic gc` calls).
func adminGC(t *testing.T, c Cluster, i int, grace time.Duration) map[string]any {
	t.Helper()
	st, b, err := Do(t.Context(), "POST", c.URL(i)+"/mosaic/v1/gc?grace="+grace.String(), "", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("gc on node %d: %d %s %v", i, st, b, err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// storedChunks is the number of blobs in node i's local store.
func storedChunks(t *testing.T, c Cluster, i int) int {
	t.Helper()
	st, b, err := Do(t.Context(), "GET", c.URL(i)+"/mosaic/v1/usage", "", nil)
	if err != nil || st != http.StatusOK {
		t.Fatalf("usage on node %d: %d %s %v", i, st, b, err)
	}
	var u struct {
		Store struct {
			Chunks int `json:"chunks"`
		} `json:"store"`
	}
	if err := json.Unmarshal(b, &u); err != nil {
		t.Fatal(err)
	}
	return u.Store.Chunks
}

// TestGarbageCollectionAcrossTheCluster: after an image is deleted, a
// collection on every node removes exactly its chunks everywhere (each
// node's store returns to what it held with the live image alone, once the
// uploader's claims on its peers have lapsed), live images stay whole on
// every node, and an upload in flight through one node while every node
// collects with no grace period loses nothing (the receiving peers keep
// what the uploader claimed there, for as long as the upload runs).
func TestGarbageCollectionAcrossTheCluster(t *testing.T) {
	const claimTTL = 3 * time.Second
	c := StartProcesses(t, 3, Options{Replicas: 2, ExtraArgs: []string{"--claim-ttl", claimTTL.String()}})
	WaitConverged(t, c, 3)
	keep := randomBytes(24<<20, 71)
	keepID := upload(t, c.URL(0), "keep", keep)
	baseline := make([]int, 3)
	for i := range 3 {
		baseline[i] = storedChunks(t, c, i)
	}

	goneID := upload(t, c.URL(1), "gone", randomBytes(24<<20, 72))
	if st, b, err := Do(t.Context(), "DELETE", c.URL(2)+"/v2/images/"+goneID, "", nil); err != nil || st != http.StatusNoContent {
		t.Fatalf("delete: %d %s %v", st, b, err)
	}
	for i := range 3 {
		if n := storedChunks(t, c, i); n <= baseline[i] {
			t.Fatalf("node %d holds %d chunks after the second upload, baseline %d: the test would prove nothing", i, n, baseline[i])
		}
	}
	// The uploader's claims lapse at most a claim TTL after its upload
	// ended; collect until every node is back to its baseline.
	for i := range 3 {
		var stats map[string]any
		Poll(t, 10*claimTTL, fmt.Sprintf("node %d back to its baseline after GC", i), func() error {
			stats = adminGC(t, c, i, 0)
			if got := storedChunks(t, c, i); got != baseline[i] {
				return fmt.Errorf("node %d holds %d chunks after GC, %d with the live image alone (gc: %v)", i, got, baseline[i], stats)
			}
			return nil
		})
	}
	want := sha256.Sum256(keep)
	for i := range 3 {
		if downloadSum(t, c.URL(i), keepID) != want {
			t.Fatalf("live image differs through node %d after GC", i)
		}
	}

	// An upload in flight while every node collects with no grace period.
	data := randomBytes(32<<20, 73)
	id, err := CreateImage(t.Context(), c.URL(0), "in-flight")
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	var wg sync.WaitGroup
	var upStatus int
	var upErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		upStatus, _, upErr = Do(t.Context(), "PUT", c.URL(0)+"/v2/images/"+id+"/file", "application/octet-stream", pr)
	}()
	half := len(data) / 2
	if _, err := io.Copy(pw, bytes.NewReader(data[:half])); err != nil {
		t.Fatal(err)
	}
	// Wait until the first half has reached the peers, then collect everywhere.
	Poll(t, 60*time.Second, "first half replicated", func() error {
		for i := 1; i < 3; i++ {
			if storedChunks(t, c, i) > baseline[i] {
				return nil
			}
		}
		return fmt.Errorf("no peer holds new chunks yet")
	})
	// Longer than a claim TTL: only renewal keeps the peers' leases now.
	time.Sleep(2 * claimTTL)
	for i := range 3 {
		before := storedChunks(t, c, i)
		stats := adminGC(t, c, i, 0)
		// Everything new on the nodes belongs to the running upload.
		if after := storedChunks(t, c, i); after != before {
			t.Fatalf("GC on node %d took %d chunks of the upload in flight (gc: %v)", i, before-after, stats)
		}
	}
	if _, err := io.Copy(pw, bytes.NewReader(data[half:])); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	wg.Wait()
	if upErr != nil || upStatus != http.StatusNoContent {
		t.Fatalf("upload during GC: %d %v", upStatus, upErr)
	}
	want = sha256.Sum256(data)
	for i := range 3 {
		adminGC(t, c, i, 0) // and once more after commit: nothing of it may go
	}
	for i := range 3 {
		if downloadSum(t, c.URL(i), id) != want {
			t.Fatalf("image uploaded during GC differs through node %d", i)
		}
	}
}
