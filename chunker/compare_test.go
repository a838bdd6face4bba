package chunker_test

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jotfs/fastcdc-go"
	"github.com/mosaicimg/mosaic/chunker"
	resticchunker "github.com/restic/chunker"
)

// The comparison runs every chunker over the same in-memory data at the same
// average chunk size (64 KiB, min 16 KiB, max 256 KiB), interleaved within
// each iteration, so the ratios come from one run on one machine state.

func benchData(n int) []byte {
	r := rand.New(rand.NewPCG(11, 12))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func runOurs(tb testing.TB, data []byte, p chunker.Params) int {
	ch, err := chunker.New(bytes.NewReader(data), p)
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for {
		_, err := ch.Next()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			tb.Fatal(err)
		}
		n++
	}
}

func runJotfs(tb testing.TB, data []byte) int {
	p := chunker.DefaultParams
	ch, err := fastcdc.NewChunker(bytes.NewReader(data), fastcdc.Options{
		MinSize: p.Min, AverageSize: p.Avg, MaxSize: p.Max, BufSize: 2 * p.Max})
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for {
		_, err := ch.Next()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			tb.Fatal(err)
		}
		n++
	}
}

func runRestic(tb testing.TB, data []byte, buf []byte) int {
	p := chunker.DefaultParams
	ch := resticchunker.NewWithBoundaries(bytes.NewReader(data), resticchunker.Pol(0x3DA3358B4DC173), uint(p.Min), uint(p.Max))
	ch.SetAverageBits(16)
	n := 0
	for {
		_, err := ch.Next(buf)
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			tb.Fatal(err)
		}
		n++
	}
}

// BenchmarkChunkerCompare reports the throughput of plain FastCDC
// (PlainParams) and of the default (4 KiB-aligned) and the ratios of plain
// FastCDC to jotfs/fastcdc-go v0.2.0 and restic/chunker v0.4.0 (issue
// figures: ≥1.7× and ≥3.5×). Chunkers read from a bytes.Reader, so the
// figures include each one's buffer handling.
func BenchmarkChunkerCompare(b *testing.B) {
	data := benchData(64 << 20)
	buf := make([]byte, chunker.DefaultParams.Max)
	var tOurs, tAligned, tJotfs, tRestic time.Duration
	var nOurs, nJotfs, nRestic int
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		t := time.Now()
		nOurs = runOurs(b, data, chunker.PlainParams)
		tOurs += time.Since(t)
		t = time.Now()
		runOurs(b, data, chunker.DefaultParams)
		tAligned += time.Since(t)
		t = time.Now()
		nJotfs = runJotfs(b, data)
		tJotfs += time.Since(t)
		t = time.Now()
		nRestic = runRestic(b, data, buf)
		tRestic += time.Since(t)
	}
	mbps := func(d time.Duration) float64 { return float64(b.N) * float64(len(data)) / d.Seconds() / 1e6 }
	b.ReportMetric(mbps(tOurs), "plain_MB/s")
	b.ReportMetric(mbps(tAligned), "default_MB/s")
	b.ReportMetric(mbps(tJotfs), "jotfs_MB/s")
	b.ReportMetric(mbps(tRestic), "restic_MB/s")
	b.ReportMetric(tJotfs.Seconds()/tOurs.Seconds(), "x_vs_jotfs")
	b.ReportMetric(tRestic.Seconds()/tOurs.Seconds(), "x_vs_restic")
	b.ReportMetric(float64(len(data))/float64(nOurs), "plain_avg_B")
	b.ReportMetric(float64(len(data))/float64(nJotfs), "jotfs_avg_B")
	b.ReportMetric(float64(len(data))/float64(nRestic), "restic_avg_B")
}
