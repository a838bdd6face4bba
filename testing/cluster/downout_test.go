package cluster

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestDeadNodeIsMarkedDownAndRepaired: a storage node killed and left dead
// is marked down by the leader after --down-after, without an operator,
// and the survivors restore R copies of its chunks; restarted, it is
// marked up, takes its share back and the others trim their extra copies.
func TestDeadNodeIsMarkedDownAndRepaired(t *testing.T) {
	ctx := t.Context()
	c := StartProcesses(t, 3, Options{Replicas: 2, ExtraArgs: []string{"--down-after", "3s"}})
	WaitConverged(t, c, 3)
	data := randomBytes(24<<20, 81)
	id := upload(t, c.URL(0), "survivor", data)
	ids := chunkIDs(t, data)
	want := sha256.Sum256(data)

	const victim = 2
	c.Kill(victim)
	begin := time.Now()
	Poll(t, 2*time.Minute, "the dead node marked down and its chunks on the survivors", func() error {
		s, err := ClusterStatus(ctx, c, 0)
		if err != nil {
			return err
		}
		for _, n := range s.Meta.Nodes {
			if n.ID == c.NodeID(victim) && !n.Down {
				return fmt.Errorf("node %s not marked down yet", n.ID)
			}
		}
		// R=2 on two storage nodes: each survivor must hold every chunk.
		return checkReplicas(ctx, c, ids, membersOf(c, s), 2)
	})
	t.Logf("dead node marked down and R copies restored in %v", time.Since(begin))
	for i := range victim {
		if downloadSum(t, c.URL(i), id) != want {
			t.Fatalf("image differs through node %d with node %d down", i, victim)
		}
	}

	c.Restart(victim)
	begin = time.Now()
	Poll(t, 2*time.Minute, "the node marked up, its share back and the extra copies trimmed", func() error {
		// Asked of a survivor: the restarted node's own registry may not
		// have caught up with the down mark yet.
		s, err := ClusterStatus(ctx, c, 0)
		if err != nil {
			return err
		}
		for _, n := range s.Meta.Nodes {
			if n.Down {
				return fmt.Errorf("node %s still marked down", n.ID)
			}
		}
		if err := checkReplicas(ctx, c, ids, membersOf(c, s), 2); err != nil {
			return err
		}
		for _, n := range s.Nodes {
			if n.Repair.State != "idle" || strings.Count(n.Repair.Membership, ";") != 3 {
				return fmt.Errorf("node %s repair %+v", n.ID, n.Repair)
			}
			if n.Error != "" || n.Store.Chunks != n.Repair.ChunksOwned {
				return fmt.Errorf("node %s holds %d chunks, owns %d (%s)", n.ID, n.Store.Chunks, n.Repair.ChunksOwned, n.Error)
			}
		}
		return nil
	})
	t.Logf("restarted node marked up and rebalanced in %v", time.Since(begin))
	if downloadSum(t, c.URL(victim), id) != want {
		t.Fatal("image differs through the restarted node")
	}
}
