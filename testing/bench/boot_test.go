package bench

import (
	"context"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/fusefs"
	"github.com/mosaicimg/mosaic/testing/harness"
)

// BenchmarkBootFromMount boots the QEMU fixture (raw, 48 MiB, TCG) in
// five interleaved rounds (the order rotating each round); each round
// boots, with the page cache of every file involved dropped first and a
// freshly opened node (empty chunk cache):
//
//   - local: the image as a plain file on ext4 (the baseline);
//   - mount: from a storage node's mount (chunks local, engine reads);
//   - pt: from the same node's mount with the image in the image cache
//     (FUSE passthrough);
//   - host: from a mount host with an empty chunk cache (CachingStore)
//     whose source is the storage node's store in the same process: no
//     network, so its time says little until the cluster exists, but the
//     bytes it fetched are what a real mount host would fetch to boot.
func BenchmarkBootFromMount(b *testing.B) {
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
	imgs := chunkstoretest.NewMemImages()
	n := openNode(b, dir, imgs, false)
	img := upload(b, n.svc, "boot", bytesReader(raw))
	cacheDir := filepath.Join(dir, "image-cache")
	c, err := engine.OpenImageCache(engine.ImageCacheConfig{Dir: cacheDir}, n.svc)
	if err != nil {
		b.Fatal(err)
	}
	if err := c.Queue(context.Background(), img.ID); err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if st, _ := c.State(context.Background()); len(st.Cached) == 1 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("image not cached within a minute")
		}
	}
	c.Close()
	n.close(b)

	ctx := context.Background()
	res := map[string][]float64{}
	add := func(k string, v float64) { res[k] = append(res[k], v) }
	b.ResetTimer()
	for round := range max(b.N, 5) {
		n := openNode(b, dir, imgs, true)
		cache, err := engine.OpenImageCache(engine.ImageCacheConfig{Dir: cacheDir}, n.svc)
		if err != nil {
			b.Fatal(err)
		}
		ptMnt := filepath.Join(dir, "mnt-pt")
		pt, err := fusefs.Mount(ptMnt, n.svc, fusefs.Options{LocalCopies: cache})
		if err != nil {
			b.Fatal(err)
		}
		// The mount host: its own empty cache in front of the storage node.
		hostLocal, err := pebblestore.Open(pebblestore.Config{Dir: filepath.Join(dir, "host", time.Now().Format("150405.000000"))})
		if err != nil {
			b.Fatal(err)
		}
		cs, err := engine.NewCachingStore(ctx, hostLocal, n.chunks, engine.CachingStoreConfig{MaxBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		hostSvc, err := engine.NewService(engine.ServiceConfig{NodeID: "host"}, imgs, cs, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		hostMnt := filepath.Join(dir, "mnt-host")
		host, err := fusefs.Mount(hostMnt, hostSvc, fusefs.Options{})
		if err != nil {
			b.Fatal(err)
		}

		paths := map[string]string{
			"local": local,
			"mount": filepath.Join(n.mnt, "images", img.ID),
			"pt":    filepath.Join(ptMnt, "images", img.ID),
			"host":  filepath.Join(hostMnt, "images", img.ID),
		}
		// The order rotates every round so that drifting machine load
		// does not favour one variant.
		order := []string{"local", "mount", "pt", "host"}
		order = append(order[round%4:], order[:round%4]...)
		for _, k := range order {
			dropCache(b, local, n.data, cacheDir, paths["mount"], paths["pt"])
			r := fx.Boot(b, ctx, paths[k], "raw")
			add(k, r.Marker)
			add(k+"-loader", r.Loader)
		}
		for _, k := range []string{"mount", "pt", "host"} {
			add(k+"/local", res[k][round]/res["local"][round])
		}
		add("host-fetched-MiB", float64(cs.Stats().FetchedBytes)/(1<<20))
		b.Logf("round %d: local %.2f s, mount %.2f s, pt %.2f s, host %.2f s (fetched %.1f MiB); passthrough stats %+v",
			round, res["local"][round], res["mount"][round], res["pt"][round], res["host"][round],
			res["host-fetched-MiB"][round], pt.Stats())

		for _, s := range []*fusefs.Server{host, pt} {
			if err := s.Unmount(); err != nil {
				b.Fatal(err)
			}
		}
		hostLocal.Close()
		cache.Close()
		n.close(b)
	}
	b.StopTimer()
	for _, k := range []string{"local", "mount", "pt", "host"} {
		b.ReportMetric(median(res[k]), k+"-s")
	}
	for _, k := range []string{"mount/local", "pt/local", "host/local"} {
		b.ReportMetric(median(res[k]), k)
	}
	b.ReportMetric(median(res["host-fetched-MiB"]), "host-fetched-MiB")
	b.ReportMetric(median(res["host-fetched-MiB"])*(1<<20)/float64(len(raw)), "host-fetched-fraction")
	b.Logf("seconds to BOOT-OK per round: %v", res)
}
