package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/mosaicimg/mosaic/testing/cluster"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// BenchmarkBootFromMountHost is the mount-host boot figure: three
// `mosaic serve` processes (R=2) and one `mosaic mount` process joined to
// them, all real processes talking HTTP over loopback. Five interleaved
// pairs (the order alternating each round):
//
//   - local: the raw fixture as a plain file on ext4, its page cache
//     dropped (the baseline);
//   - host: the same image through the mount host, restarted on an empty
//     chunk cache (its chunk-cache directory removed), so every byte the
//     boot reads is fetched from the storage nodes and verified. The
//     storage nodes' own page cache is left as it is (not dropped).
//
// It reports the medians of both, host/local, and the bytes the host
// fetched to boot (the chunk cache's FetchedBytes: encoded chunk bytes).
func BenchmarkBootFromMountHost(b *testing.B) {
	fx := harness.BootFixture(b)
	dir := b.TempDir()
	local := filepath.Join(dir, "disk.raw")
	raw, err := os.ReadFile(fx.Raw)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(local, raw, 0o644); err != nil {
		b.Fatal(err)
	}
	c := cluster.StartProcesses(b, 3, cluster.Options{Replicas: 2, Direct: true})
	cluster.WaitConverged(b, c, 3)
	id := uploadTo(b, c.URL(0), "boot", raw)
	h := cluster.StartMountHost(b, c, cluster.MountHostOptions{})
	hostPath := h.WaitImage(b, id)

	ctx := context.Background()
	res := map[string][]float64{}
	add := func(k string, v float64) { res[k] = append(res[k], v) }
	b.ResetTimer()
	for round := range max(b.N, 5) {
		// An empty chunk cache: stop the host, remove its cache, start it
		// again (its metadata stays; it rejoins as the same non-voter).
		h.Stop()
		if err := os.RemoveAll(filepath.Join(h.DataDir, "chunk-cache")); err != nil {
			b.Fatal(err)
		}
		h.Start()
		h.WaitImage(b, id)
		if st := h.CacheStats(b); st.Chunks != 0 {
			b.Fatalf("the restarted host's chunk cache is not empty: %+v", st)
		}
		order := []string{"local", "host"}
		if round%2 == 1 {
			order = []string{"host", "local"}
		}
		for _, k := range order {
			p := local
			if k == "host" {
				p = hostPath
			}
			dropCache(b, local)
			r := fx.Boot(b, ctx, p, "raw")
			add(k, r.Marker)
			add(k+"-loader", r.Loader)
		}
		st := h.CacheStats(b)
		add("host/local", res["host"][round]/res["local"][round])
		add("fetched-MiB", float64(st.FetchedBytes)/(1<<20))
		b.Logf("round %d: local %.2f s, host %.2f s (%.3f×); host fetched %.1f MiB in %d chunks",
			round, res["local"][round], res["host"][round], res["host/local"][round], res["fetched-MiB"][round], st.Misses)
	}
	b.StopTimer()
	b.ReportMetric(median(res["local"]), "local-s")
	b.ReportMetric(median(res["host"]), "host-s")
	b.ReportMetric(median(res["host/local"]), "host/local")
	b.ReportMetric(median(res["fetched-MiB"]), "fetched-MiB")
	b.ReportMetric(median(res["fetched-MiB"])*(1<<20)/float64(len(raw)), "fetched-fraction")
	b.Logf("seconds to BOOT-OK per round: %v", res)
}

// uploadTo creates a raw image through a node's API and uploads data.
func uploadTo(b *testing.B, url, name string, data []byte) string {
	b.Helper()
	ctx := context.Background()
	st, body, err := cluster.Do(ctx, "POST", url+"/v2/images", "application/json",
		bytes.NewReader(fmt.Appendf(nil, `{"name":%q,"disk_format":"raw","container_format":"bare"}`, name)))
	if err != nil || st != http.StatusCreated {
		b.Fatalf("create %s: %d %s %v", name, st, body, err)
	}
	var img struct{ ID string }
	if err := json.Unmarshal(body, &img); err != nil {
		b.Fatal(err)
	}
	st, body, err = cluster.Do(ctx, "PUT", url+"/v2/images/"+img.ID+"/file", "application/octet-stream", bytes.NewReader(data))
	if err != nil || st != http.StatusNoContent {
		b.Fatalf("upload %s: %d %s %v", name, st, body, err)
	}
	return img.ID
}
