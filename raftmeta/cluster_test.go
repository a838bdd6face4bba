package raftmeta

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// testPeerHandler serves the internal endpoints raftmeta's forwarding
// uses, calling the node directly (package api serves them in production;
// testing/cluster runs that path).
func testPeerHandler(n **Node) http.Handler {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) {
		status := http.StatusInternalServerError
		if errors.Is(err, engine.ErrNotLeader) {
			status = http.StatusMisdirectedRequest
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(errorBody{Error: engine.ErrorKind(err), Message: err.Error()})
	}
	mux.HandleFunc("POST "+pathApply, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		out, err := (*n).ApplyForwarded(r.Context(), b)
		if err != nil {
			fail(w, err)
			return
		}
		_, _ = w.Write(out)
	})
	mux.HandleFunc("GET "+pathReadIndex, func(w http.ResponseWriter, r *http.Request) {
		idx, err := (*n).ReadIndex(r.Context())
		if err != nil {
			fail(w, err)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]uint64{"index": idx})
	})
	mux.HandleFunc("POST "+pathJoin, func(w http.ResponseWriter, r *http.Request) {
		var ni NodeInfo
		_ = json.NewDecoder(r.Body).Decode(&ni)
		if err := (*n).Join(r.Context(), ni); err != nil {
			fail(w, err)
			return
		}
	})
	mux.HandleFunc("POST "+pathRemove, func(w http.ResponseWriter, r *http.Request) {
		var req struct{ ID string }
		_ = json.NewDecoder(r.Body).Decode(&req)
		if err := (*n).Remove(r.Context(), req.ID); err != nil {
			fail(w, err)
			return
		}
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(SecretHeader) != "s3cret" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func startTestNode(t *testing.T, dir, raftAddr string, bootstrap bool, srv *httptest.Server, holder **Node) *Node {
	t.Helper()
	n, err := Open(Config{
		NodeID: "n-" + srv.Listener.Addr().String(), Dir: dir, RaftAddr: raftAddr, APIAddr: srv.Listener.Addr().String(),
		Bootstrap: bootstrap, Secret: "s3cret",
		ApplyTimeout: 10 * time.Second, SnapshotThreshold: 64, TrailingLogs: 16, SnapshotInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	*holder = n
	return n
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func poll(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestThreeNodes: join (idempotent), forwarded writes, linearizable reads
// on followers, snapshots with log truncation, restart and remove.
func TestThreeNodes(t *testing.T) {
	ctx := t.Context()
	var holders [3]*Node
	var srvs [3]*httptest.Server
	var nodes [3]*Node
	dirs := [3]string{t.TempDir(), t.TempDir(), t.TempDir()}
	raftAddrs := [3]string{freeAddr(t), freeAddr(t), freeAddr(t)}
	for i := range srvs {
		srvs[i] = httptest.NewServer(testPeerHandler(&holders[i]))
		t.Cleanup(srvs[i].Close)
	}
	for i := range nodes {
		nodes[i] = startTestNode(t, dirs[i], raftAddrs[i], i == 0, srvs[i], &holders[i])
	}
	t.Cleanup(func() {
		for _, n := range holders {
			if n != nil {
				n.Close()
			}
		}
	})
	if err := nodes[0].WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if err := n.JoinVia(ctx, []string{srvs[0].Listener.Addr().String()}); err != nil {
			t.Fatal(err)
		}
		// Idempotent.
		if err := n.JoinVia(ctx, []string{srvs[0].Listener.Addr().String()}); err != nil {
			t.Fatal(err)
		}
	}
	poll(t, "registry of 3 on every node", 10*time.Second, func() bool {
		for _, n := range nodes {
			if len(n.Nodes()) != 3 {
				return false
			}
		}
		return true
	})
	// Writes through followers; reads through the other follower see them at once.
	for i := 0; i < 200; i++ {
		w, r := nodes[1+i%2], nodes[2-i%2]
		id := "img-" + time.Now().Format("150405.000000000")
		if _, err := w.CreateImage(ctx, &engine.Image{ID: id, Status: engine.StatusQueued}); err != nil {
			t.Fatalf("create via follower: %v", err)
		}
		got, err := r.GetImage(ctx, id)
		if err != nil || got.Revision != 1 {
			t.Fatalf("read after write on another follower: %v %v", got, err)
		}
	}
	// A conflict comes back through forwarding as a conflict.
	if _, err := nodes[1].CreateImage(ctx, &engine.Image{ID: "dup"}); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[2].CreateImage(ctx, &engine.Image{ID: "dup"}); !errors.Is(err, engine.ErrExists) {
		t.Fatalf("duplicate create via follower: %v, want ErrExists", err)
	}
	// Snapshots ran and truncated the log.
	poll(t, "log truncation on every node", 20*time.Second, func() bool {
		for _, n := range nodes {
			if first, _ := n.LogStore().FirstIndex(); first <= 1 {
				return false
			}
		}
		return true
	})
	// Restart a follower: it resumes from snapshot + log and catches up.
	if err := nodes[2].Close(); err != nil {
		t.Fatal(err)
	}
	holders[2] = nil
	if _, err := nodes[1].CreateImage(ctx, &engine.Image{ID: "while-down"}); err != nil {
		t.Fatal(err)
	}
	nodes[2] = startTestNode(t, dirs[2], raftAddrs[2], false, srvs[2], &holders[2])
	if _, err := nodes[2].GetImage(ctx, "while-down"); err != nil {
		t.Fatalf("restarted follower: %v", err)
	}
	imgs, err := nodes[2].ListImages(ctx, nil)
	if err != nil || len(imgs) != 202 {
		t.Fatalf("restarted follower lists %d images (%v), want 202", len(imgs), err)
	}
	// Remove a follower through the other follower.
	if err := nodes[1].Remove(ctx, nodes[2].ID()); err != nil {
		t.Fatal(err)
	}
	poll(t, "registry of 2", 10*time.Second, func() bool { return len(nodes[0].Nodes()) == 2 && len(nodes[1].Nodes()) == 2 })
	if _, err := nodes[1].CreateImage(ctx, &engine.Image{ID: "after-remove"}); err != nil {
		t.Fatal(err)
	}
	if s := nodes[0].Status(); len(s.Servers) != 2 {
		t.Fatalf("servers after remove: %+v", s.Servers)
	}
}
