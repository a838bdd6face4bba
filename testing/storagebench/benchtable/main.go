// Command benchtable turns `go test -bench` output on stdin into the table
// of the storage figures the issue names, each with its target, so that
// `make bench` ends with one readable summary. Metrics it does not know are
// listed after the table.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

type figure struct {
	bench, metric, what, target string
	ok                          func(float64) bool
}

var figures = []figure{
	{"ChunkerCompare", "x_vs_jotfs", "plain FastCDC vs jotfs/fastcdc-go, same avg", "≥ 1.7×", func(v float64) bool { return v >= 1.7 }},
	{"ChunkerCompare", "x_vs_restic", "plain FastCDC vs restic/chunker, same avg", "≥ 3.5×", func(v float64) bool { return v >= 3.5 }},
	{"ChunkerCompare", "plain_MB/s", "plain FastCDC throughput, 1 core", "", nil},
	{"ChunkerCompare", "default_MB/s", "default (4 KiB-aligned) throughput, 1 core", "", nil},
	{"IngestRandomPebbleVsMemory", "pebble/mem", "1 GiB random, SHA-256 only: Pebble vs in-memory map", "≥ 0.5", func(v float64) bool { return v >= 0.5 }},
	{"IngestRandomPebbleVsMemory", "pebble/mem_cpu", "same, by CPU time (robust on the shared machine)", "≥ 0.5", func(v float64) bool { return v >= 0.5 }},
	{"IngestRandomPebbleVsMemory", "write_amp", "Pebble write amplification (kernel write_bytes / logical)", "≤ 2.5", func(v float64) bool { return v <= 2.5 }},
	{"IngestRandomPebbleVsMemory", "reingest_speedup", "1 GiB random, SHA-256: re-ingest vs first ingest, wall", "≥ 2.5×", func(v float64) bool { return v >= 2.5 }},
	{"IngestRandomPebbleVsMemory", "reingest_cpu_speedup", "same, CPU time", "≥ 2.5×", func(v float64) bool { return v >= 2.5 }},
	{"IngestRandomPebbleVsMemory", "reingest_unknown_speedup", "same, through an ingester without the stream memo (every byte hashed again)", "", nil},
	{"IngestRandomPebbleVsMemory", "pebble_MB/s", "ingest into Pebble", "", nil},
	{"IngestRandomPebbleVsMemory", "mem_MB/s", "ingest into the in-memory map", "", nil},
	{"IngestVMImage", "ingest_cpu_efficiency", "VM image, MD5+SHA-512: stage CPU / ingest CPU", "≥ 0.85", func(v float64) bool { return v >= 0.85 }},
	{"IngestVMImage", "ingest/ceiling", "VM image: wall-clock ceiling (2 idle cores) / ingest", "≥ 0.85", func(v float64) bool { return v >= 0.85 }},
	{"IngestVMImage", "reingest_speedup", "re-ingest (all chunks present) vs first ingest, wall", "≥ 2.5×", func(v float64) bool { return v >= 2.5 }},
	{"IngestVMImage", "reingest_cpu_speedup", "re-ingest vs first ingest, CPU time", "≥ 2.5×", func(v float64) bool { return v >= 2.5 }},
	{"IngestVMImage", "reingest_unknown_speedup", "re-ingest without the stream memo (MD5 and SHA-512 computed again), wall", "", nil},
	{"IngestVMImage", "ingest_cores_used", "cores the ingest actually got (CPU/wall)", "", nil},
	{"ReadSequential/random-1GiB/fresh", "MB/s", "sequential ReadAt, verified, 1 GiB random, fresh cache (process start), wall", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadSequential/random-1GiB/fresh", "cpu_2core_MB/s", "same, 2 × bytes / CPU time", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadSequential/random-1GiB/node", "MB/s", "sequential ReadAt, verified, 1 GiB random, a running node's cache, wall", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadSequential/random-1GiB/node", "cpu_2core_MB/s", "same, 2 × bytes / CPU time", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadSequential/vm-image/fresh", "MB/s", "sequential ReadAt, verified, VM image, fresh cache (process start), wall", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadSequential/vm-image/fresh", "cpu_2core_MB/s", "same, 2 × bytes / CPU time", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadSequential/vm-image/node", "MB/s", "sequential ReadAt, verified, VM image, a running node's cache, wall", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadSequential/vm-image/node", "cpu_2core_MB/s", "same, 2 × bytes / CPU time", "≥ 1500 MB/s", func(v float64) bool { return v >= 1500 }},
	{"ReadRandom4K", "warm_p50_µs", "random 4 KiB ReadAt p50, warm chunk cache", "≤ 50 µs", func(v float64) bool { return v <= 50 }},
	{"ReadRandom4K", "cold_p50_µs", "random 4 KiB ReadAt p50, chunk-cache miss", "", nil},
	{"Dedup/raw", "default/fixed4m", "stored bytes: default / fixed 4 MiB (raw)", "≤ 0.7", func(v float64) bool { return v <= 0.7 }},
	{"Dedup/raw", "default/fixed4k", "stored bytes: default / fixed 4 KiB (raw)", "≤ 1.1", func(v float64) bool { return v <= 1.1 }},
	{"Dedup/raw", "fixed4k_chunks/default_chunks", "chunks: fixed 4 KiB / default (raw)", "≥ 8×", func(v float64) bool { return v >= 8 }},
	{"Dedup/qcow2", "default/fixed4m", "stored bytes: default / fixed 4 MiB (qcow2)", "≤ 0.7", func(v float64) bool { return v <= 0.7 }},
	{"Dedup/qcow2", "default/fixed4k", "stored bytes: default / fixed 4 KiB (qcow2)", "≤ 1.1", func(v float64) bool { return v <= 1.1 }},
	{"Dedup/qcow2", "fixed4k_chunks/default_chunks", "chunks: fixed 4 KiB / default (qcow2)", "≥ 8×", func(v float64) bool { return v >= 8 }},
}

func main() {
	// values[bench][metric] lists every run's value.
	values := map[string]map[string][]float64{}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Println(line)
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndex(name, "-"); i > 0 {
			name = name[:i]
		}
		if values[name] == nil {
			values[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			values[name][f[i+1]] = append(values[name][f[i+1]], v)
		}
	}
	fmt.Println("\n## Storage figures (ratios within one run; runs listed in order)")
	fmt.Println("\n| figure | benchmark | runs | target | met |\n|---|---|---|---|---|")
	for _, fg := range figures {
		vs := values[fg.bench][fg.metric]
		if len(vs) == 0 {
			fmt.Printf("| %s | %s %s | not run | %s | – |\n", fg.what, fg.bench, fg.metric, fg.target)
			continue
		}
		var runs []string
		met := "–"
		if fg.ok != nil {
			met = "yes"
		}
		for _, v := range vs {
			runs = append(runs, strconv.FormatFloat(v, 'g', 4, 64))
			if fg.ok != nil && !fg.ok(v) {
				met = "NO"
			}
		}
		fmt.Printf("| %s | %s %s | %s | %s | %s |\n", fg.what, fg.bench, fg.metric, strings.Join(runs, ", "), fg.target, met)
	}
}
