package api_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchLatency runs n requests through the handler in-process (no
// network, no client) and reports p50/p99 latency and allocations.
func benchLatency(b *testing.B, h http.Handler, method, target, body string) {
	b.Helper()
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		lat = append(lat, time.Since(start))
		if rec.Code >= 300 {
			b.Fatalf("%s %s: %d %s", method, target, rec.Code, rec.Body.String())
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkList25Of10000 measures Glance's default list (25 newest) and
// two other shapes over 10,000 images (make bench).
func BenchmarkList25Of10000(b *testing.B) {
	srv := newServer(b)
	h := srv.Config.Handler
	for i := range 10000 {
		req := httptest.NewRequest("POST", "/v2/images", strings.NewReader(
			fmt.Sprintf(`{"name":"img-%05d","disk_format":"raw","container_format":"bare","tags":["bench"],"foo":"bar"}`, i)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 201 {
			b.Fatal(rec.Body.String())
		}
	}
	b.Run("default", func(b *testing.B) { benchLatency(b, h, "GET", "/v2/images", "") })
	b.Run("page-5", func(b *testing.B) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/images?limit=100", nil))
		marker := jsonLast(b, rec.Body.String())
		benchLatency(b, h, "GET", "/v2/images?marker="+marker, "")
	})
	b.Run("property-filter", func(b *testing.B) { benchLatency(b, h, "GET", "/v2/images?foo=bar&limit=25", "") })
	b.Run("sort-name", func(b *testing.B) { benchLatency(b, h, "GET", "/v2/images?sort=name:asc&limit=25", "") })
}

func jsonLast(b *testing.B, body string) string {
	i := strings.LastIndex(body, `"id": "`)
	if i < 0 {
		b.Fatal("no id in list")
	}
	return body[i+7 : i+7+36]
}

// BenchmarkCreateShow measures image creation (one Raft entry each) and show.
func BenchmarkCreateShow(b *testing.B) {
	srv := newServer(b)
	h := srv.Config.Handler
	b.Run("create", func(b *testing.B) {
		benchLatency(b, h, "POST", "/v2/images", `{"name":"bench","disk_format":"raw","container_format":"bare","tags":["bench"],"foo":"bar"}`)
	})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v2/images?limit=1", nil))
	id := jsonLast(b, rec.Body.String())
	b.Run("show", func(b *testing.B) { benchLatency(b, h, "GET", "/v2/images/"+id, "") })
}
