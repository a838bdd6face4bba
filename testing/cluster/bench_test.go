package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// Figures for `make bench` (docs/cluster.md records them). Clusters are
// real `mosaic serve` processes on loopback.

func percentile(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// createLoad runs creates through url from clients goroutines, n in all,
// and returns each one's latency and the wall time.
func createLoad(b testing.TB, url string, clients, n int) ([]time.Duration, time.Duration) {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	begin := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				t0 := time.Now()
				if _, err := CreateImage(context.Background(), url, fmt.Sprintf("bench-%d", i)); err != nil {
					b.Errorf("create: %v", err)
					return
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(begin)
}

// BenchmarkClusterCreate: create latency (1 client) and throughput (16
// clients) on 1 and 3 nodes, through the leader and through a follower.
func BenchmarkClusterCreate(b *testing.B) {
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			c := StartProcesses(b, nodes, Options{Direct: true})
			WaitConverged(b, c, nodes)
			l := Leader(b, c)
			targets := map[string]int{"leader": l}
			if nodes > 1 {
				targets["follower"] = (l + 1) % nodes
			}
			for _, via := range []string{"leader", "follower"} {
				node, ok := targets[via]
				if !ok {
					continue
				}
				for range b.N {
					createLoad(b, c.URL(node), 4, 200) // warm up
					lat, _ := createLoad(b, c.URL(node), 1, 1000)
					b.Logf("nodes=%d via %s, 1 client: p50 %v p99 %v", nodes, via, percentile(lat, 0.5), percentile(lat, 0.99))
					b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, via+"-p50-ms")
					b.ReportMetric(float64(percentile(lat, 0.99).Microseconds())/1000, via+"-p99-ms")
					lat, wall := createLoad(b, c.URL(node), 16, 8000)
					rate := float64(len(lat)) / wall.Seconds()
					b.Logf("nodes=%d via %s, 16 clients: %.0f creates/s (p50 %v p99 %v)", nodes, via, rate, percentile(lat, 0.5), percentile(lat, 0.99))
					b.ReportMetric(rate, via+"-creates/s")
				}
			}
		})
	}
}

// BenchmarkClusterFailover: kill -9 the leader while a client writes
// through a surviving node; time from the kill to the first acknowledged
// write. Three rounds.
func BenchmarkClusterFailover(b *testing.B) {
	c := StartProcesses(b, 3, Options{Direct: true})
	WaitConverged(b, c, 3)
	for range b.N {
		var worst time.Duration
		for round := range 3 {
			l := Leader(b, c)
			via := (l + 1) % 3
			killed := time.Now()
			c.Kill(l)
			var took time.Duration
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := CreateImage(ctx, c.URL(via), "failover")
				cancel()
				if err == nil {
					took = time.Since(killed)
					break
				}
				if time.Since(killed) > time.Minute {
					b.Fatalf("no write accepted within a minute of the kill: %v", err)
				}
			}
			b.Logf("round %d: leader node %d killed; first acknowledged write through node %d after %v", round, l, via, took)
			worst = max(worst, took)
			c.Restart(l)
			WaitConverged(b, c, 3)
		}
		b.ReportMetric(worst.Seconds(), "worst-failover-s")
	}
}

// BenchmarkClusterUpload: a 256 MiB upload on 1 node (baseline) and on 3
// nodes (every chunk on 3 nodes before the upload is acknowledged).
func BenchmarkClusterUpload(b *testing.B) {
	data := randomBytes(256<<20, 5)
	for _, nodes := range []int{1, 3} {
		b.Run(fmt.Sprintf("nodes=%d", nodes), func(b *testing.B) {
			c := StartProcesses(b, nodes, Options{Direct: true})
			WaitConverged(b, c, nodes)
			via := (Leader(b, c) + 1) % nodes
			for range b.N {
				id, err := CreateImage(context.Background(), c.URL(via), "up")
				if err != nil {
					b.Fatal(err)
				}
				t0 := time.Now()
				st, body, err := Do(context.Background(), "PUT", c.URL(via)+"/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data))
				if err != nil || st != http.StatusNoContent {
					b.Fatalf("upload: %d %s %v", st, body, err)
				}
				d := time.Since(t0)
				b.Logf("nodes=%d: 256 MiB upload in %v (%.0f MiB/s)", nodes, d, 256/d.Seconds())
				b.ReportMetric(256/d.Seconds(), "MiB/s")
			}
		})
	}
}
