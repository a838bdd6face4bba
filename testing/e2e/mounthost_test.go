package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/cluster"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// clusterUpload creates an image through node url and uploads body.
func clusterUpload(t *testing.T, url, name, diskFormat string, body io.Reader) string {
	t.Helper()
	ctx := context.Background()
	st, b, err := cluster.Do(ctx, "POST", url+"/v2/images", "application/json",
		bytes.NewReader(fmt.Appendf(nil, `{"name":%q,"disk_format":%q,"container_format":"bare"}`, name, diskFormat)))
	if err != nil || st != http.StatusCreated {
		t.Fatalf("create %s: %d %s %v", name, st, b, err)
	}
	var img struct{ ID string }
	if err := json.Unmarshal(b, &img); err != nil {
		t.Fatal(err)
	}
	st, b, err = cluster.Do(ctx, "PUT", url+"/v2/images/"+img.ID+"/file", "application/octet-stream", body)
	if err != nil || st != http.StatusNoContent {
		t.Fatalf("upload %s: %d %s %v", name, st, b, err)
	}
	return img.ID
}

// TestMountHost runs three storage processes (R=2) and `mosaic mount`
// hosts joined to them as non-voters:
//
//   - QEMU boots the raw and the qcow2 fixture from mount hosts with
//     empty chunk caches (one fresh host per format, so each boot fetches
//     everything it reads);
//   - a reader of an image on the host keeps reading, byte-exact, after
//     kill -9 of a storage node (the chunks it still needs are fetched
//     from their other owner);
//   - the cache API (admin only) prefetches into the host's image cache;
//   - an image deleted while open on a host keeps its chunks through GC on
//     every storage node (the host's in-use lease), and a chunk cache
//     smaller than what is read stays within its bound;
//   - SIGTERM with a file open waits for the close, then unmounts.
func TestMountHost(t *testing.T) {
	harness.RequireTool(t, "fusermount3", "fuse3")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Fatalf("/dev/fuse is missing: the FUSE mount cannot be tested: %v", err)
	}
	fx := harness.BootFixture(t)
	// Short claims: chunks pushed by uploads are not protected from GC
	// beyond a few seconds, so the delete-while-open check below shows
	// the lease, not a claim, keeping them.
	c := cluster.StartProcesses(t, 3, cluster.Options{Replicas: 2, Direct: true, ExtraArgs: []string{"--claim-ttl", "3s"}})
	cluster.WaitConverged(t, c, 3)

	open := func(p string) *os.File {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	rawFile, qcowFile := open(fx.Raw), open(fx.Qcow2)
	rawID := clusterUpload(t, c.URL(0), "boot-raw", "raw", rawFile)
	qcowID := clusterUpload(t, c.URL(1), "boot-qcow2", "qcow2", qcowFile)
	rawFile.Close()
	qcowFile.Close()
	// Random bytes (nothing dedups) with a zero run in the middle.
	data := make([]byte, 24<<20)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	clear(data[8<<20 : 10<<20])
	dataID := clusterUpload(t, c.URL(2), "random", "raw", bytes.NewReader(data))

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("admintok u-admin p-admin admin\nmembertok u-member p-member member\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for i, b := range []struct{ id, format string }{{rawID, "raw"}, {qcowID, "qcow2"}} {
		extra := []string{"--auth", "token", "--token-file", tokens, "--lease-ttl", "8s"}
		if i == 0 {
			// The boot holds the image open for seconds: long enough to
			// count as in use and be cached.
			extra = append(extra, "--image-cache-in-use-after", "2s")
		} else {
			extra = append(extra, "--image-cache-in-use-after", "0")
		}
		if i == 1 {
			// A chunk cache smaller than what this host reads: LRU eviction.
			extra = append(extra, "--cache-size", fmt.Sprint(8<<20))
		}
		h := cluster.StartMountHost(t, c, cluster.MountHostOptions{Host: fmt.Sprintf("127.0.0.%d", 60+i), Extra: extra})
		p := h.WaitImage(t, b.id)
		if st := h.CacheStats(t); st.Misses != 0 || st.Chunks != 0 {
			t.Fatalf("a new mount host's chunk cache is not empty: %+v", st)
		}
		r := fx.Boot(t, ctx, p, b.format)
		st := h.CacheStats(t)
		t.Logf("%s booted from an empty-cache mount host: marker after %.2f s (loader %.2f s); fetched %.1f MiB in %d chunks",
			b.format, r.Marker, r.Loader, float64(st.FetchedBytes)/(1<<20), st.Misses)
		if st.Misses == 0 || st.FetchedBytes == 0 {
			t.Fatalf("the boot fetched nothing through the host's cache: %+v", st)
		}
		if i == 0 {
			inUseCached(t, h, rawID, fx.Raw)
			checkHostAPI(t, h, rawID)
			readThroughDeath(t, c, h, dataID, data)
		} else {
			deleteWhileOpen(t, c, h, dataID, data)
			if st := h.CacheStats(t); st.Evicted == 0 || st.UsedBytes > st.MaxBytes || st.MaxBytes != 8<<20 {
				t.Fatalf("an 8 MiB chunk cache after reading ~38 MiB: %+v; want evictions and use within the bound", st)
			} else {
				t.Logf("8 MiB chunk cache: %d chunks evicted, %.1f MiB used", st.Evicted, float64(st.UsedBytes)/(1<<20))
			}
			stopWhileOpen(t, h, p)
		}
	}
}

// readThroughDeath reads the first quarter of the image through the host,
// kills a storage node with SIGKILL, reads the rest, and compares.
func readThroughDeath(t *testing.T, c cluster.Cluster, h *cluster.MountHost, id string, want []byte) {
	t.Helper()
	f, err := os.Open(h.WaitImage(t, id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	q := len(want) / 4
	if _, err := io.ReadFull(f, got[:q]); err != nil {
		t.Fatalf("read before the kill: %v", err)
	}
	before := h.CacheStats(t)
	victim := cluster.Leader(t, c) // the hardest case: metadata and chunks both lose a node
	c.Kill(victim)
	t.Logf("killed storage node %d (the leader) after %d MiB", victim, q>>20)
	start := time.Now()
	if _, err := io.ReadFull(f, got[q:]); err != nil {
		t.Fatalf("read after killing storage node %d: %v", victim, err)
	}
	after := h.CacheStats(t)
	if !bytes.Equal(got, want) {
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("bytes read through the mount host differ from the upload at offset %d", i)
			}
		}
	}
	if after.Misses <= before.Misses {
		t.Fatalf("the reads after the kill fetched nothing (%+v → %+v): the test did not exercise failover", before, after)
	}
	t.Logf("read the remaining %d MiB in %v with node %d dead, fetching %d chunks", (len(want)-q)>>20,
		time.Since(start).Round(time.Millisecond), victim, after.Misses-before.Misses)
	// Random reads at random offsets and sizes after the kill, too.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		off := rng.IntN(len(want))
		n := min(1+rng.IntN(256<<10), len(want)-off)
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, int64(off)); err != nil {
			t.Fatalf("ReadAt(%d, %d) after the kill: %v", off, n, err)
		}
		if !bytes.Equal(buf, want[off:off+n]) {
			t.Fatalf("ReadAt(%d, %d) after the kill differs from the upload", off, n)
		}
	}
}

// cachedImages returns the host's image cache listing (as admin).
func cachedImages(t *testing.T, h *cluster.MountHost) (map[string]int64, error) {
	t.Helper()
	st, b, err := cluster.Do(context.Background(), "GET", h.URL()+"/v2/cache", "", nil, "X-Auth-Token", "admintok")
	if err != nil {
		t.Fatal(err)
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("GET /v2/cache: %d %s", st, b)
	}
	var cs struct {
		Cached []struct {
			ImageID string `json:"image_id"`
			Hits    int64  `json:"hits"`
		} `json:"cached_images"`
	}
	if err := json.Unmarshal(b, &cs); err != nil {
		return nil, err
	}
	hits := map[string]int64{}
	for _, c := range cs.Cached {
		hits[c.ImageID] = c.Hits
	}
	return hits, nil
}

// inUseCached: the image a VM just booted from (held open past
// --image-cache-in-use-after) is cached on the host without a PUT, and the
// next open reads the copy (a hit), with the uploaded bytes.
func inUseCached(t *testing.T, h *cluster.MountHost, id, localFile string) {
	t.Helper()
	cluster.Poll(t, time.Minute, "the booted image cached on the host", func() error {
		hits, err := cachedImages(t, h)
		if err != nil {
			return err
		}
		if _, ok := hits[id]; !ok || len(hits) != 1 {
			return fmt.Errorf("cached images: %v", hits)
		}
		return nil
	})
	want, err := os.ReadFile(localFile)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(h.WaitImage(t, id))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the image read through its cached copy differs from the upload")
	}
	hits, err := cachedImages(t, h)
	if err != nil {
		t.Fatal(err)
	}
	if hits[id] < 1 {
		t.Fatalf("the open after caching did not use the copy: hits %v", hits)
	}
	t.Logf("the booted image was cached on the host without a PUT; the next open read the copy (%d hits)", hits[id])
}

// checkHostAPI: the host serves Glance's cache API, admin only (401
// without a token, 403 for a member), and a prefetch fetches the image
// into the host's image cache; it serves nothing else of the image API.
func checkHostAPI(t *testing.T, h *cluster.MountHost, id string) {
	t.Helper()
	ctx := context.Background()
	call := func(method, path, token string) (int, []byte) {
		t.Helper()
		var hdr []string
		if token != "" {
			hdr = []string{"X-Auth-Token", token}
		}
		st, b, err := cluster.Do(ctx, method, h.URL()+path, "", nil, hdr...)
		if err != nil {
			t.Fatal(err)
		}
		return st, b
	}
	if st, b := call("GET", "/v2/cache", ""); st != http.StatusUnauthorized {
		t.Fatalf("GET /v2/cache on the mount host without a token: %d %s; want 401", st, b)
	}
	if st, b := call("GET", "/v2/cache", "membertok"); st != http.StatusForbidden {
		t.Fatalf("GET /v2/cache on the mount host as a member: %d %s; want 403", st, b)
	}
	if st, b := call("PUT", "/v2/cache/"+id, "admintok"); st != http.StatusAccepted {
		t.Fatalf("PUT /v2/cache/%s on the mount host as admin: %d %s; want 202", id, st, b)
	}
	cluster.Poll(t, time.Minute, "the prefetched image in the host's cache", func() error {
		st, b := call("GET", "/v2/cache", "admintok")
		if st != http.StatusOK {
			return fmt.Errorf("GET /v2/cache: %d %s", st, b)
		}
		var cs struct {
			Cached []struct {
				ImageID string `json:"image_id"`
			} `json:"cached_images"`
		}
		if err := json.Unmarshal(b, &cs); err != nil {
			return err
		}
		if len(cs.Cached) != 1 || cs.Cached[0].ImageID != id {
			return fmt.Errorf("cached images: %s", b)
		}
		return nil
	})
	if st, b := call("DELETE", "/v2/cache/"+id, "admintok"); st != http.StatusNoContent {
		t.Fatalf("DELETE /v2/cache/%s on the mount host: %d %s; want 204", id, st, b)
	}
	if st, b := call("GET", "/v2/images", "admintok"); st != http.StatusNotFound {
		t.Fatalf("GET /v2/images on the mount host: %d %s; want 404 (a host serves only the cache API)", st, b)
	}
}

// stopWhileOpen: SIGTERM while a file is open leaves the tree mounted and
// readable until the file is closed; then the host unmounts and exits.
func stopWhileOpen(t *testing.T, h *cluster.MountHost, p string) {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Kill(h.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	cluster.Poll(t, 30*time.Second, "the host says it waits for open files", func() error {
		if _, err := f.ReadAt(buf, 0); err != nil {
			return fmt.Errorf("read while stopping: %w", err)
		}
		if !strings.Contains(h.Log(), "images are open") {
			return fmt.Errorf("no 'images are open' in the host's log yet")
		}
		return nil
	})
	if h.Exited() {
		t.Fatal("the host exited with a file open")
	}
	if _, err := f.ReadAt(buf, 16<<20); err != nil {
		t.Fatalf("read while the host waits to unmount: %v", err)
	}
	f.Close()
	cluster.Poll(t, 30*time.Second, "the host exits after the last close", func() error {
		if !h.Exited() {
			return fmt.Errorf("still running")
		}
		return nil
	})
	if _, err := os.Stat(p); err == nil {
		t.Fatalf("%s still reachable after the host exited", p)
	}
}

// deleteWhileOpen: the host has the image open (4 KiB read) when it is
// deleted and every running storage node collects garbage with no grace;
// the host's in-use lease keeps the chunks, so the rest of the image
// (never fetched before) reads byte-exact. After the close the lease is
// released and the next collections sweep the chunks.
func deleteWhileOpen(t *testing.T, c cluster.Cluster, h *cluster.MountHost, id string, want []byte) {
	t.Helper()
	ctx := context.Background()
	f, err := os.Open(h.WaitImage(t, id))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(f, got[:4096]); err != nil {
		t.Fatal(err)
	}
	var api string
	for i := 0; i < c.Len(); i++ {
		if c.Running(i) {
			api = c.URL(i)
		}
	}
	if st, b, err := cluster.Do(ctx, "DELETE", api+"/v2/images/"+id, "", nil); err != nil || st != http.StatusNoContent {
		t.Fatalf("delete %s: %d %s %v", id, st, b, err)
	}
	gc := func() (swept int) {
		t.Helper()
		for i := 0; i < c.Len(); i++ {
			if !c.Running(i) {
				continue
			}
			st, b, err := cluster.Do(ctx, "POST", c.URL(i)+"/mosaic/v1/gc?grace=0s", "", nil)
			if err != nil || st != http.StatusOK {
				t.Fatalf("gc on node %d: %d %s %v", i, st, b, err)
			}
			var s struct {
				Swept int `json:"swept"`
			}
			if err := json.Unmarshal(b, &s); err != nil {
				t.Fatal(err)
			}
			swept += s.Swept
		}
		return swept
	}
	swept := gc()
	if _, err := io.ReadFull(f, got[4096:]); err != nil {
		t.Fatalf("read the deleted, still open image after GC (swept %d chunks): %v", swept, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the deleted, still open image reads different bytes after GC")
	}
	t.Logf("deleted image read in full through the host after GC on every node (which swept %d other chunks)", swept)
	f.Close()
	cluster.Poll(t, time.Minute, "GC sweeps the deleted image's chunks once the host released its lease", func() error {
		if n := gc(); n < len(want)/(1<<20) {
			return fmt.Errorf("swept %d chunks", n)
		}
		return nil
	})
}
