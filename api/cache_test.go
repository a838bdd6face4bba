package api

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
)

type cacheTestNode struct {
	svc   *engine.Service
	cache *engine.ImageCache
	srv   *server
}

func newCacheTestNode(t *testing.T, withCache bool) *cacheTestNode {
	t.Helper()
	chunks, err := pebblestore.Open(pebblestore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chunks.Close() })
	svc, err := engine.NewService(engine.ServiceConfig{NodeID: "t"}, chunkstoretest.NewMemImages(), chunks, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := &cacheTestNode{svc: svc}
	o := Options{Images: svc, Logger: slog.New(slog.DiscardHandler), MaxJSONBody: 1 << 20}
	if withCache {
		n.cache, err = engine.OpenImageCache(engine.ImageCacheConfig{Dir: t.TempDir()}, svc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.cache.Close() })
		o.Cache = n.cache
	}
	n.srv = &server{o: o, log: o.Logger, mux: http.NewServeMux()}
	n.srv.routes()
	return n
}

// as serves one request acting for caller: the routes without the noauth
// middleware, so that tests can be an admin before authentication exists.
func (n *cacheTestNode) as(t *testing.T, caller *engine.Caller, method, path string, hdr map[string]string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req = req.WithContext(engine.WithCaller(req.Context(), caller))
	rec := httptest.NewRecorder()
	n.srv.mux.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

func (n *cacheTestNode) upload(t *testing.T, data []byte) string {
	t.Helper()
	img, err := n.svc.Create(context.Background(), &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.svc.Upload(context.Background(), img.ID, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return img.ID
}

var cacheAdmin = &engine.Caller{UserID: "u", ProjectID: "p", Roles: []string{"admin", "member", "reader"}, IsAdmin: true}

func TestCacheAPINoAuthIsForbiddenAsInGlance(t *testing.T) {
	n := newCacheTestNode(t, true)
	h := New(n.srv.o) // the real handler: every request is the noauth context
	ts := httptest.NewServer(h)
	defer ts.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/v2/cache", nil)
	req.Header.Set("Accept", "*/*") // what curl sends (Glance edge case 165)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || !strings.Contains(string(body), "You are not authorized to complete cache_list action.") ||
		resp.Header.Get("Content-Length") != "175" || resp.Header.Get("Content-Type") != "text/html; charset=UTF-8" {
		t.Fatalf("noauth GET /v2/cache: %d %v\n%s", resp.StatusCode, resp.Header, body)
	}
	for _, c := range []struct{ method, path, action string }{
		{"PUT", "/v2/cache/" + n.upload(t, []byte("x")), "cache_image"},
		{"DELETE", "/v2/cache", "cache_delete"},
	} {
		req, _ := http.NewRequest(c.method, ts.URL+c.path, nil)
		req.Header.Set("Accept", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(body), c.action) {
			t.Fatalf("noauth %s %s: %d %s", c.method, c.path, resp.StatusCode, body)
		}
	}
	member := &engine.Caller{ProjectID: "p", Roles: []string{"member", "reader"}}
	if st, _ := n.as(t, member, "GET", "/v2/cache", nil); st != 403 {
		t.Fatalf("member GET /v2/cache: %d", st)
	}
}

func TestCacheAPIWithoutACacheIs404ForAdmins(t *testing.T) {
	n := newCacheTestNode(t, false)
	if st, body := n.as(t, cacheAdmin, "GET", "/v2/cache", nil); st != 404 || !strings.Contains(body, "Caching via API is not supported at this site.") {
		t.Fatalf("admin without cache: %d %s", st, body)
	}
	if st, _ := n.as(t, engine.NoAuthCaller(), "GET", "/v2/cache", nil); st != 403 {
		t.Fatalf("noauth without cache: %d, want the policy's 403 first", st)
	}
}

func TestCacheAPIPrefetchListDeleteClear(t *testing.T) {
	n := newCacheTestNode(t, true)
	data := bytes.Repeat([]byte("mosaic-"), 300000)
	id := n.upload(t, data)
	if st, body := n.as(t, cacheAdmin, "PUT", "/v2/cache/"+id, nil); st != 202 || body != "" {
		t.Fatalf("PUT /v2/cache/%s: %d %q", id, st, body)
	}
	type state struct {
		Cached []struct {
			ImageID      string  `json:"image_id"`
			Hits         int64   `json:"hits"`
			Size         int64   `json:"size"`
			LastAccessed float64 `json:"last_accessed"`
			LastModified float64 `json:"last_modified"`
		} `json:"cached_images"`
		Queued []string `json:"queued_images"`
	}
	var s state
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, body := n.as(t, cacheAdmin, "GET", "/v2/cache", map[string]string{"Accept": "application/json"})
		if st != 200 {
			t.Fatalf("GET /v2/cache: %d %s", st, body)
		}
		s = state{}
		if err := json.Unmarshal([]byte(body), &s); err != nil || s.Queued == nil {
			t.Fatalf("GET /v2/cache body %s: %v", body, err)
		}
		if len(s.Cached) == 1 && len(s.Queued) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not cached within 10 s: %s", body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	c := s.Cached[0]
	if c.ImageID != id || c.Size != int64(len(data)) || c.Hits != 0 || c.LastModified < 1.7e9 || c.LastAccessed < c.LastModified {
		t.Fatalf("cached entry %+v", c)
	}

	if st, body := n.as(t, cacheAdmin, "PUT", "/v2/cache/00000000-0000-0000-0000-00000000dead", nil); st != 404 || !strings.Contains(body, "not found") {
		t.Fatalf("PUT unknown: %d %s", st, body)
	}
	queued, err := n.svc.Create(context.Background(), &engine.Image{DiskFormat: "raw", ContainerFormat: "bare"})
	if err != nil {
		t.Fatal(err)
	}
	if st, body := n.as(t, cacheAdmin, "PUT", "/v2/cache/"+queued.ID, nil); st != 400 || !strings.Contains(body, "Only images with status active") {
		t.Fatalf("PUT a queued image: %d %s", st, body)
	}
	if st, _ := n.as(t, cacheAdmin, "POST", "/v2/cache", nil); st != 405 {
		t.Fatalf("POST /v2/cache: %d", st)
	}
	if st, body := n.as(t, cacheAdmin, "DELETE", "/v2/cache", map[string]string{"X-Image-Cache-Clear-Target": "both"}); st != 400 || !strings.Contains(body, "x-image-cache-clear-target") {
		t.Fatalf("DELETE /v2/cache bad target: %d %s", st, body)
	}
	if st, _ := n.as(t, cacheAdmin, "DELETE", "/v2/cache", map[string]string{"X-Image-Cache-Clear-Target": "queue"}); st != 204 {
		t.Fatalf("clear queue: %d", st)
	}
	if got, _ := n.cache.State(context.Background()); len(got.Cached) != 1 {
		t.Fatalf("clearing the queue dropped copies: %+v", got)
	}
	if st, _ := n.as(t, cacheAdmin, "DELETE", "/v2/cache/"+id, nil); st != 204 {
		t.Fatalf("DELETE /v2/cache/%s: %d", id, st)
	}
	if got, _ := n.cache.State(context.Background()); len(got.Cached) != 0 {
		t.Fatalf("after DELETE: %+v", got)
	}
	if st, _ := n.as(t, cacheAdmin, "DELETE", "/v2/cache/00000000-0000-0000-0000-00000000dead", nil); st != 404 {
		t.Fatalf("DELETE unknown: %d", st)
	}
	if st, _ := n.as(t, cacheAdmin, "PUT", "/v2/cache/"+id, nil); st != 202 {
		t.Fatal("re-queue")
	}
	if st, _ := n.as(t, cacheAdmin, "DELETE", "/v2/cache", nil); st != 204 {
		t.Fatalf("clear all: %d", st)
	}
}
