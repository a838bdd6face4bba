package tenancy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
	"github.com/mosaicimg/mosaic/testing/keystone"
)

// BenchmarkShowImageKeystoneVsToken is issue 6's figure: what Keystone
// mode with a warm token cache adds to GET /v2/images/{id} over token
// mode. Two nodes run side by side (one per mode, same binary, info
// logging); requests alternate between them one by one, so drift in the
// machine's load reaches both alike. Run with -benchtime 1x: it runs its
// own samples and reports p50/p99 of each mode and their ratios.
func BenchmarkShowImageKeystoneVsToken(b *testing.B) {
	const warm, samples = 500, 20000
	ks := keystone.Shared(b)
	suffix := randomHex(4)
	proj := ks.CreateProject(b, "bench-"+suffix)
	uid := ks.CreateUser(b, "bench-"+suffix, userPassword)
	ks.Grant(b, proj, uid, "member")
	ksToken := ks.Token(b, "bench-"+suffix, userPassword, proj)

	dir := b.TempDir()
	tokFile := filepath.Join(dir, "tokens")
	fileToken := "bench-" + randomHex(16)
	if err := os.WriteFile(tokFile, []byte(fileToken+" bench-user "+proj+" member,reader\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(ks.AdminPassword), 0o600); err != nil {
		b.Fatal(err)
	}
	tokenNode := harness.StartNode(b, harness.NodeOptions{Extra: []string{"--log-level", "info", "--auth", "token", "--token-file", tokFile}})
	ksNode := harness.StartNode(b, harness.NodeOptions{Extra: []string{"--log-level", "info", "--auth", "keystone",
		"--keystone-url", ks.URL, "--keystone-service-user", "admin", "--keystone-service-project", "admin",
		"--keystone-service-password-file", pwFile}})

	type mode struct {
		name, url, token, path string
		client                 *http.Client
		lat                    []time.Duration
	}
	modes := []*mode{
		{name: "token", url: tokenNode.URL(), token: fileToken},
		{name: "keystone", url: ksNode.URL(), token: ksToken},
	}
	for _, m := range modes {
		m.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
		req, _ := http.NewRequest("POST", m.url+"/v2/images", strings.NewReader(`{"name":"bench","disk_format":"raw","container_format":"bare"}`))
		req.Header.Set("X-Auth-Token", m.token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := m.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			b.Fatalf("%s create: %d %s", m.name, resp.StatusCode, body)
		}
		var img struct{ ID string }
		if err := json.Unmarshal(body, &img); err != nil || img.ID == "" {
			b.Fatalf("%s create: %v %s", m.name, err, body)
		}
		m.path = m.url + "/v2/images/" + img.ID
	}
	show := func(m *mode) time.Duration {
		req, _ := http.NewRequest("GET", m.path, nil)
		req.Header.Set("X-Auth-Token", m.token)
		start := time.Now()
		resp, err := m.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != 200 {
			b.Fatalf("%s show: %d", m.name, resp.StatusCode)
		}
		return d
	}
	for range warm {
		for _, m := range modes {
			show(m)
		}
	}
	b.ResetTimer()
	for i := range samples {
		// Alternate which mode goes first, so neither always follows the other.
		for j := range modes {
			m := modes[(i+j)%len(modes)]
			m.lat = append(m.lat, show(m))
		}
	}
	b.StopTimer()
	pct := func(d []time.Duration, p float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[int(float64(len(s)-1)*p)]
	}
	t50, t99 := pct(modes[0].lat, 0.50), pct(modes[0].lat, 0.99)
	k50, k99 := pct(modes[1].lat, 0.50), pct(modes[1].lat, 0.99)
	b.ReportMetric(float64(t50.Microseconds()), "token-p50-µs")
	b.ReportMetric(float64(t99.Microseconds()), "token-p99-µs")
	b.ReportMetric(float64(k50.Microseconds()), "keystone-p50-µs")
	b.ReportMetric(float64(k99.Microseconds()), "keystone-p99-µs")
	b.ReportMetric(float64(k50)/float64(t50), "p50-ratio")
	b.ReportMetric(float64(k99)/float64(t99), "p99-ratio")
	fmt.Fprintf(os.Stderr, "GET /v2/images/{id}, %d alternating requests per mode, warm Keystone token cache: token p50 %v p99 %v; keystone p50 %v p99 %v; keystone/token p50 %.3f p99 %.3f\n",
		samples, t50, t99, k50, k99, float64(k50)/float64(t50), float64(k99)/float64(t99))
}
