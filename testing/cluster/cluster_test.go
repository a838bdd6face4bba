package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/chunker"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/replication"
	"github.com/mosaicimg/mosaic/testing/harness"
)

func soak() bool { return os.Getenv("MOSAIC_SOAK") != "" }

// both runs body against each implementation.
func both(t *testing.T, body func(t *testing.T, start StartFunc)) {
	for _, impl := range Impls {
		t.Run(impl.Name, func(t *testing.T) { body(t, impl.Start) })
	}
}

// TestJoinForwardAndReadEverywhere: writes through any node, read at once
// through every other (linearizable reads); the internal API refuses users;
// a restarted node rejoins without an operator, idempotently.
func TestJoinForwardAndReadEverywhere(t *testing.T) {
	both(t, func(t *testing.T, start StartFunc) {
		ctx := t.Context()
		c := start(t, 3, Options{})
		WaitConverged(t, c, 3)
		for i := range 30 {
			id, err := CreateImage(ctx, c.URL(i%3), fmt.Sprintf("img-%d", i))
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range []int{(i + 1) % 3, (i + 2) % 3} {
				if st, _, err := GetImage(ctx, c.URL(j), id); err != nil || st != http.StatusOK {
					t.Fatalf("image %s created on node %d: node %d answers %d %v", id, i%3, j, st, err)
				}
			}
		}
		// The internal API never answers without the secret, with a user's
		// token, or with a wrong secret.
		for _, hdr := range [][]string{nil, {"X-Auth-Token", "admin"}, {"X-Mosaic-Cluster-Secret", "wrong-secret-0123456789"}} {
			st, _, err := Do(ctx, "GET", c.URL(1)+"/internal/cluster/status", "", nil, hdr...)
			if err != nil || st != http.StatusForbidden {
				t.Fatalf("internal endpoint with %v: %d %v, want 403", hdr, st, err)
			}
			st, _, _ = Do(ctx, "POST", c.URL(1)+"/internal/raft/apply", "", strings.NewReader("\x01\x01{}"), hdr...)
			if st != http.StatusForbidden {
				t.Fatalf("forwarded apply with %v: %d, want 403", hdr, st)
			}
		}
		// Restart a follower: it rejoins by itself; membership stays 3.
		f := (Leader(t, c) + 1) % 3
		c.Kill(f)
		c.Restart(f)
		WaitConverged(t, c, 3)
		s, err := ClusterStatus(ctx, c, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(s.Meta.Servers) != 3 {
			t.Fatalf("after restart: raft servers %+v", s.Meta.Servers)
		}
	})
}

// TestKillNoAcknowledgedWriteLost: clients create images through every
// node while the leader and then a follower are killed (kill -9 for
// processes) and restarted; then every node is killed at once and
// restarted. Every create that was acknowledged must be there, on every
// node. It also measures failover (kill → first acknowledged write).
func TestKillNoAcknowledgedWriteLost(t *testing.T) {
	both(t, func(t *testing.T, start StartFunc) {
		ctx := t.Context()
		c := start(t, 3, Options{})
		WaitConverged(t, c, 3)
		var mu sync.Mutex
		var acked []string
		lastAck := time.Time{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := 0; ; k++ {
					select {
					case <-stop:
						return
					default:
					}
					node := (w + k) % 3
					if !c.Running(node) {
						continue
					}
					rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					id, err := CreateImage(rctx, c.URL(node), fmt.Sprintf("w%d-%d", w, k))
					cancel()
					if err == nil {
						mu.Lock()
						acked = append(acked, id)
						lastAck = time.Now()
						mu.Unlock()
					}
				}
			}()
		}
		count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
		waitMore := func(n int) {
			base := count()
			Poll(t, 30*time.Second, "more acknowledged writes", func() error {
				if count() < base+n {
					return fmt.Errorf("%d acknowledged", count()-base)
				}
				return nil
			})
		}
		waitMore(50)
		for round, victim := range []string{"leader", "follower"} {
			l := Leader(t, c)
			k := l
			if victim == "follower" {
				k = (l + 1) % 3
			}
			killed := time.Now()
			c.Kill(k)
			waitMore(1)
			mu.Lock()
			t.Logf("round %d: killed %s (node %d); first acknowledged write after %v", round, victim, k, lastAck.Sub(killed))
			mu.Unlock()
			waitMore(30)
			c.Restart(k)
			waitMore(30)
		}
		close(stop)
		wg.Wait()
		WaitConverged(t, c, 3)
		check := func(when string) {
			for i := range 3 {
				for _, id := range acked {
					if st, _, err := GetImage(ctx, c.URL(i), id); err != nil || st != http.StatusOK {
						t.Fatalf("%s: acknowledged image %s on node %d: %d %v", when, id, i, st, err)
					}
				}
			}
		}
		check("after leader and follower kills")
		for i := range 3 {
			c.Kill(i)
		}
		for i := range 3 {
			c.Restart(i)
		}
		WaitConverged(t, c, 3)
		check("after killing every node")
		t.Logf("%d acknowledged creates, none lost", len(acked))
	})
}

// TestPartitionedFollowerNeverServesStaleReads: a follower cut off from
// the others must not answer a read from stale state; once healed it
// catches up.
func TestPartitionedFollowerNeverServesStaleReads(t *testing.T) {
	both(t, func(t *testing.T, start StartFunc) {
		ctx := t.Context()
		c := start(t, 3, Options{})
		WaitConverged(t, c, 3)
		l := Leader(t, c)
		f := (l + 1) % 3
		c.Partition(f)
		id, err := CreateImage(ctx, c.URL(l), "after-partition")
		if err != nil {
			t.Fatalf("majority side write: %v", err)
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, _, err := GetImage(rctx, c.URL(f), id)
		cancel()
		if err == nil && st != http.StatusServiceUnavailable {
			t.Fatalf("partitioned follower answered %d (a stale read); want 503 or no answer", st)
		}
		c.Heal()
		Poll(t, 30*time.Second, "healed follower sees the write", func() error {
			rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			defer cancel()
			st, _, err := GetImage(rctx, c.URL(f), id)
			if err != nil || st != http.StatusOK {
				return fmt.Errorf("%d %v", st, err)
			}
			return nil
		})
	})
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 99))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func upload(t *testing.T, url, name string, data []byte) string {
	t.Helper()
	ctx := t.Context()
	id, err := CreateImage(ctx, url, name)
	if err != nil {
		t.Fatal(err)
	}
	st, b, err := Do(ctx, "PUT", url+"/v2/images/"+id+"/file", "application/octet-stream", bytes.NewReader(data))
	if err != nil || st != http.StatusNoContent {
		t.Fatalf("upload %s: %d %s %v", name, st, b, err)
	}
	return id
}

func downloadSum(t *testing.T, url, id string) [32]byte {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", url+"/v2/images/"+id+"/file", nil)
	resp, err := HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("download %s from %s: %d %s", id, url, resp.StatusCode, b)
	}
	h := sha256.New()
	if _, err := io.Copy(h, resp.Body); err != nil {
		t.Fatalf("download %s from %s: %v", id, url, err)
	}
	return [32]byte(h.Sum(nil))
}

// TestUploadKillDownload: upload through node A, kill -9 A, download
// through B and C: byte-identical (every chunk was on R nodes before the
// upload was acknowledged).
func TestUploadKillDownload(t *testing.T) {
	both(t, func(t *testing.T, start StartFunc) {
		size := 256 << 20
		if strings.HasSuffix(t.Name(), "inprocess") && !soak() {
			size = 64 << 20 // the process variant moves the full 256 MiB
		}
		c := start(t, 3, Options{})
		WaitConverged(t, c, 3)
		data := randomBytes(size, 1)
		want := sha256.Sum256(data)
		a := (Leader(t, c) + 1) % 3 // a follower: its writes are forwarded
		begin := time.Now()
		id := upload(t, c.URL(a), "big", data)
		t.Logf("uploaded %d MiB through node %d in %v", size>>20, a, time.Since(begin))
		c.Kill(a)
		for _, b := range []int{(a + 1) % 3, (a + 2) % 3} {
			begin := time.Now()
			if got := downloadSum(t, c.URL(b), id); got != want {
				t.Fatalf("download through node %d differs", b)
			}
			t.Logf("downloaded through node %d in %v: identical", b, time.Since(begin))
		}
	})
}

// chunkIDs cuts data as the ingest does and returns its stored chunks.
func chunkIDs(t *testing.T, data []byte) []engine.ChunkID {
	ch, err := chunker.New(bytes.NewReader(data), chunker.DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	var ids []engine.ChunkID
	for {
		ck, err := ch.Next()
		b := ck.Data
		if err == io.EOF {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		if !engine.IsAllZero(b) {
			ids = append(ids, engine.SumChunk(b))
		}
	}
}

// checkReplicas asks every owner of every chunk (by the placement rule)
// whether it holds it.
func checkReplicas(ctx context.Context, c Cluster, ids []engine.ChunkID, members []replication.Member, replicas int) error {
	rk := replication.NewRanking(members)
	perNode := map[string][]engine.ChunkID{}
	addr := map[string]string{}
	for _, m := range members {
		addr[m.ID] = m.Addr
	}
	for _, id := range ids {
		for _, o := range rk.Owners(id, replicas) {
			perNode[o.ID] = append(perNode[o.ID], id)
		}
	}
	for node, want := range perNode {
		var body []byte
		for _, id := range want {
			body = append(body, id[:]...)
		}
		st, b, err := Do(ctx, "POST", "http://"+addr[node]+"/internal/chunks/claim", "", bytes.NewReader(body),
			"X-Mosaic-Cluster-Secret", c.Secret())
		if err != nil || st != http.StatusOK || len(b) != len(want) {
			return fmt.Errorf("claim on %s: %d %v", node, st, err)
		}
		missing := bytes.Count(b, []byte{0})
		if missing > 0 {
			return fmt.Errorf("node %s lacks %d of the %d chunks it owns", node, missing, len(want))
		}
	}
	return nil
}

func mustStatus(t *testing.T, c Cluster, i int) *Status {
	t.Helper()
	s, err := ClusterStatus(t.Context(), c, i)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func membersOf(c Cluster, s *Status) []replication.Member {
	var ms []replication.Member
	for _, n := range s.Meta.Nodes {
		ms = append(ms, replication.Member{ID: n.ID, Addr: n.APIAddr, Storage: n.Storage()})
	}
	return ms
}

// TestJoinRebalancesAndRemoveRepairs: a 4th node joins a cluster holding
// data; repair moves its share to it and every chunk ends with R copies
// on its owners. Then a node is removed and R copies are restored on the
// others. The soak variant holds 2 GiB.
func TestJoinRebalancesAndRemoveRepairs(t *testing.T) {
	both(t, func(t *testing.T, start StartFunc) {
		total, per := 48<<20, 16<<20
		if soak() && strings.HasSuffix(t.Name(), "processes") {
			total, per = 2<<30, 256<<20
		}
		ctx := t.Context()
		c := start(t, 3, Options{})
		WaitConverged(t, c, 3)
		var ids []engine.ChunkID
		for k := 0; k < total/per; k++ {
			data := randomBytes(per, uint64(100+k))
			upload(t, c.URL(k%3), fmt.Sprintf("part-%d", k), data)
			ids = append(ids, chunkIDs(t, data)...)
		}
		t.Logf("cluster holds %d MiB in %d chunks", total>>20, len(ids))
		begin := time.Now()
		d := c.Add()
		WaitConverged(t, c, 4)
		waitRepaired(t, c, 4, ids, 3, 30*time.Minute)
		t.Logf("4th node joined; rebalance to R=3 copies of every chunk took %v", time.Since(begin))
		// The old nodes trim the copies they no longer own.
		Poll(t, 5*time.Minute, "surplus copies trimmed", func() error {
			s, err := ClusterStatus(ctx, c, d)
			if err != nil {
				return err
			}
			for _, n := range s.Nodes {
				if n.Store.Chunks != n.Repair.ChunksOwned {
					return fmt.Errorf("node %s holds %d chunks, owns %d (repair %+v)", n.ID, n.Store.Chunks, n.Repair.ChunksOwned, n.Repair)
				}
			}
			return nil
		})
		if err := checkReplicas(ctx, c, ids, membersOf(c, mustStatus(t, c, d)), 3); err != nil {
			t.Fatalf("after trimming: %v", err)
		}
		t.Logf("rebalance including trimming took %v", time.Since(begin))
		if c, ok := c.(*processes); ok {
			out := harness.Run(t, ctx, []string{"MOSAIC_CLUSTER_SECRET=" + c.Secret()}, harness.Binary(t),
				"cluster", "status", "--addr", c.APIAddr(d))
			t.Logf("mosaic cluster status:\n%s", out)
			if !strings.Contains(out, c.NodeID(d)) {
				t.Fatalf("status does not list the new node")
			}
		}
		// Remove node 0 (through node 1): its copies are re-created.
		st, b, err := Do(ctx, "POST", c.URL(1)+"/internal/cluster/remove", "application/json",
			strings.NewReader(fmt.Sprintf(`{"id":%q}`, c.NodeID(0))), "X-Mosaic-Cluster-Secret", c.Secret())
		if err != nil || st != http.StatusNoContent {
			t.Fatalf("remove: %d %s %v", st, b, err)
		}
		c.Kill(0)
		begin = time.Now()
		WaitConverged(t, c, 3)
		waitRepaired(t, c, 3, ids, 3, 30*time.Minute)
		t.Logf("node removed; repair to R=3 copies took %v", time.Since(begin))
	})
}

// waitRepaired waits until every running node finished a repair pass for
// the current membership and the owners of every chunk hold it.
func waitRepaired(t *testing.T, c Cluster, members int, ids []engine.ChunkID, replicas int, timeout time.Duration) {
	t.Helper()
	ctx := t.Context()
	Poll(t, timeout, "R copies of every chunk", func() error {
		var s *Status
		for i := 0; i < c.Len(); i++ {
			if c.Running(i) {
				var err error
				if s, err = ClusterStatus(ctx, c, i); err != nil {
					return err
				}
				break
			}
		}
		if len(s.Meta.Nodes) != members {
			return fmt.Errorf("%d members", len(s.Meta.Nodes))
		}
		for _, n := range s.Nodes {
			if n.Error != "" {
				return fmt.Errorf("node %s: %s", n.ID, n.Error)
			}
			if n.Repair.State != "idle" || n.Repair.Passes == 0 || strings.Count(n.Repair.Membership, ";") != members {
				return fmt.Errorf("node %s repair %+v", n.ID, n.Repair)
			}
		}
		return checkReplicas(ctx, c, ids, membersOf(c, s), replicas)
	})
}

// TestNonVoterServesEverything: a non-voter (a hypervisor host's role)
// replicates metadata, forwards writes, reads linearizably and streams
// images whose chunks all live on the storage voters.
func TestNonVoterServesEverything(t *testing.T) {
	both(t, func(t *testing.T, start StartFunc) {
		ctx := t.Context()
		c := start(t, 3, Options{})
		WaitConverged(t, c, 3)
		nv := c.AddNonVoter()
		WaitConverged(t, c, 4)
		s, err := ClusterStatus(ctx, c, nv)
		if err != nil {
			t.Fatal(err)
		}
		for _, srv := range s.Meta.Servers {
			if srv.ID == c.NodeID(nv) && srv.Suffrage != "Nonvoter" {
				t.Fatalf("non-voter joined as %s", srv.Suffrage)
			}
		}
		data := randomBytes(8<<20, 3)
		id := upload(t, c.URL(nv), "via-nonvoter", data)
		if got := downloadSum(t, c.URL(nv), id); got != sha256.Sum256(data) {
			t.Fatal("download through the non-voter differs")
		}
		s, err = ClusterStatus(ctx, c, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range s.Nodes {
			if n.ID == c.NodeID(nv) && n.Store.Chunks != 0 {
				t.Fatalf("the non-voter stores %d chunks; it owns none", n.Store.Chunks)
			}
		}
		// The non-voter leaves (through the CLI for processes).
		if p, ok := c.(*processes); ok {
			harness.Run(t, ctx, []string{"MOSAIC_CLUSTER_SECRET=" + p.Secret()}, harness.Binary(t),
				"cluster", "leave", "--addr", p.APIAddr(nv))
		} else if st, b, err := Do(ctx, "POST", c.URL(nv)+"/internal/cluster/leave", "", nil, "X-Mosaic-Cluster-Secret", c.Secret()); err != nil || st != http.StatusNoContent {
			t.Fatalf("leave: %d %s %v", st, b, err)
		}
		c.Kill(nv)
		WaitConverged(t, c, 3)
	})
}

// TestReaddressedNodeRejoins: a node that comes back on new Raft and API
// addresses rejoins cleanly (the stale server is replaced).
func TestReaddressedNodeRejoins(t *testing.T) {
	ctx := t.Context()
	c := StartInProcess(t, 3, Options{}).(*inProcess)
	WaitConverged(t, c, 3)
	f := (Leader(t, c) + 1) % 3
	c.Kill(f)
	c.Readdress(f)
	c.Restart(f)
	WaitConverged(t, c, 3)
	s, err := ClusterStatus(ctx, c, (f+1)%3)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Meta.Servers) != 3 {
		t.Fatalf("servers after readdress: %+v", s.Meta.Servers)
	}
	for _, n := range s.Meta.Nodes {
		if n.ID == c.NodeID(f) && n.APIAddr != c.APIAddr(f) {
			t.Fatalf("registry keeps the old address %s, want %s", n.APIAddr, c.APIAddr(f))
		}
	}
	id, err := CreateImage(ctx, c.URL(f), "after-readdress")
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := GetImage(ctx, c.URL((f+1)%3), id); err != nil || st != http.StatusOK {
		t.Fatalf("read elsewhere: %d %v", st, err)
	}
}

// TestUploadWithAnOwnerDown: with a storage node down (still a member), an
// upload places that node's copies on the next nodes of each chunk's
// ranking, so every chunk still has R durable copies; once the node is
// back, repair gives it its chunks.
func TestUploadWithAnOwnerDown(t *testing.T) {
	both(t, func(t *testing.T, start StartFunc) {
		c := start(t, 4, Options{})
		WaitConverged(t, c, 4)
		down := (Leader(t, c) + 1) % 4
		c.Kill(down)
		via := (down + 1) % 4
		data := randomBytes(16<<20, 9)
		ids := chunkIDs(t, data)
		id := upload(t, c.URL(via), "owner-down", data)
		want := sha256.Sum256(data)
		for i := range 4 {
			if i != down && downloadSum(t, c.URL(i), id) != want {
				t.Fatalf("download through node %d differs", i)
			}
		}
		c.Restart(down)
		WaitConverged(t, c, 4)
		// Repair runs periodically and on membership changes; ask the
		// restarted node's repairer through a status poll until its owned
		// chunks are all present.
		waitRepaired(t, c, 4, ids, 3, 2*time.Minute)
	})
}
