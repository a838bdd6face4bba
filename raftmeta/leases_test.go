package raftmeta

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

// TestLeasesApplyExpireAndSnapshot: a put replaces a host's lease, an
// empty put releases it, every put drops leases expired at its time, and
// leases survive a snapshot.
func TestLeasesApplyExpireAndSnapshot(t *testing.T) {
	f := newFSM()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r1, r2 := engine.ChunkID{1}, engine.ChunkID{2}
	put := func(i int, host string, now time.Time, ttl time.Duration, roots ...engine.ChunkID) {
		t.Helper()
		e := mustEncode(t, CmdPutLeases, putLeasesV1{Leases: HostLeases{Host: host, Roots: roots, Expires: now.Add(ttl)}, Now: now})
		if res := f.Apply(&raft.Log{Index: uint64(i), Type: raft.LogCommand, Data: e}).(*applyResult); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	put(1, "hostA", t0, time.Minute, r1)
	put(2, "hostB", t0, time.Minute, r1, r2)
	put(3, "hostA", t0.Add(time.Second), time.Minute, r2) // renewal replaces
	if got := f.st.leases["hostA"].Roots; !reflect.DeepEqual(got, []engine.ChunkID{r2}) {
		t.Fatalf("hostA roots %v after renewal", got)
	}
	var buf bytes.Buffer
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := writeSnapshot(&buf, snap.(*snapshot).st); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.st.leases, g.st.leases) {
		t.Fatalf("restored leases differ: %v vs %v", f.st.leases, g.st.leases)
	}
	// hostB stops renewing: hostA's renewal after B's expiry drops it.
	put(4, "hostA", t0.Add(2*time.Minute), time.Minute, r2)
	if _, ok := f.st.leases["hostB"]; ok {
		t.Fatal("an expired lease survived a later put")
	}
	put(5, "hostA", t0.Add(2*time.Minute), time.Minute) // release
	if len(f.st.leases) != 0 {
		t.Fatalf("leases after release: %v", f.st.leases)
	}
	if err := checkCommand(mustEncode(t, CmdPutLeases, putLeasesV1{})); err != nil {
		t.Fatalf("a put without host must be refused by Apply, not panic: %v", err)
	}
}

// TestLeaseRootsOnANode: PutLeases through Raft, LeaseRoots as the GC sees
// them, and expiry by the reader's clock.
func TestLeaseRootsOnANode(t *testing.T) {
	n := openTestNode(t)
	ctx := context.Background()
	r := engine.ChunkID{7}
	if err := n.PutLeases(ctx, "host", []engine.ChunkID{r}, time.Hour); err != nil {
		t.Fatal(err)
	}
	roots, err := n.LeaseRoots().LiveRoots(ctx)
	if err != nil || !reflect.DeepEqual(roots, []engine.ChunkID{r}) {
		t.Fatalf("lease roots %v, %v", roots, err)
	}
	if err := n.PutLeases(ctx, "host", []engine.ChunkID{r}, -time.Second); err != nil {
		t.Fatal(err)
	}
	if roots, err := n.LeaseRoots().LiveRoots(ctx); err != nil || len(roots) != 0 {
		t.Fatalf("expired lease still counted: %v, %v", roots, err)
	}
}
