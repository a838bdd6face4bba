package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/raftmeta"
	"github.com/mosaicimg/mosaic/replication"
)

// HTTP is a client for test traffic: short idle pools so a killed node's
// connections do not linger.
var HTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: 5 * time.Second}}

// Do sends a request and returns the status and body.
func Do(ctx context.Context, method, url, ctype string, body io.Reader, hdr ...string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// CreateImage creates a raw/bare image through node url and returns its ID.
func CreateImage(ctx context.Context, url, name string) (string, error) {
	st, b, err := Do(ctx, "POST", url+"/v2/images", "application/json",
		bytes.NewReader(fmt.Appendf(nil, `{"name":%q,"disk_format":"raw","container_format":"bare"}`, name)))
	if err != nil {
		return "", err
	}
	if st != http.StatusCreated {
		return "", fmt.Errorf("create: %d %s", st, b)
	}
	var img struct{ ID string }
	if err := json.Unmarshal(b, &img); err != nil {
		return "", err
	}
	return img.ID, nil
}

// GetImage returns the status code and the decoded image.
func GetImage(ctx context.Context, url, id string) (int, map[string]any, error) {
	st, b, err := Do(ctx, "GET", url+"/v2/images/"+id, "", nil)
	if err != nil || st != http.StatusOK {
		return st, nil, err
	}
	var m map[string]any
	err = json.Unmarshal(b, &m)
	return st, m, err
}

// Status is the parsed `mosaic cluster status` JSON.
type Status struct {
	Meta  raftmeta.Status          `json:"meta"`
	Nodes []replication.NodeStatus `json:"nodes"`
}

// ClusterStatus asks node i for the cluster's status.
func ClusterStatus(ctx context.Context, c Cluster, i int) (*Status, error) {
	st, b, err := Do(ctx, "GET", c.URL(i)+"/internal/cluster/status", "", nil, "X-Mosaic-Cluster-Secret", c.Secret())
	if err != nil {
		return nil, err
	}
	if st != http.StatusOK {
		return nil, fmt.Errorf("status of node %d: %d %s", i, st, b)
	}
	var s Status
	return &s, json.Unmarshal(b, &s)
}

// Poll calls cond until it returns nil or timeout passes, then fails the
// test with cond's last error.
func Poll(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitConverged waits until every running node knows the same leader,
// the registry lists want nodes, and each has applied what the leader
// committed.
func WaitConverged(t testing.TB, c Cluster, want int) {
	t.Helper()
	ctx := context.Background()
	Poll(t, 2*time.Minute, "cluster converged", func() error {
		leader := ""
		var commit uint64
		for i := 0; i < c.Len(); i++ {
			if !c.Running(i) {
				continue
			}
			s, err := ClusterStatus(ctx, c, i)
			if err != nil {
				return err
			}
			m := s.Meta
			if m.LeaderID == "" || (leader != "" && m.LeaderID != leader) {
				return fmt.Errorf("node %d sees leader %q, others %q", i, m.LeaderID, leader)
			}
			leader = m.LeaderID
			if len(m.Nodes) != want {
				return fmt.Errorf("node %d registry has %d nodes, want %d", i, len(m.Nodes), want)
			}
			if m.State == "Leader" {
				commit = m.AppliedIndex
			}
		}
		for i := 0; i < c.Len(); i++ {
			if !c.Running(i) {
				continue
			}
			s, err := ClusterStatus(ctx, c, i)
			if err != nil {
				return err
			}
			if s.Meta.AppliedIndex < commit {
				return fmt.Errorf("node %d applied %d < leader applied %d", i, s.Meta.AppliedIndex, commit)
			}
		}
		return nil
	})
}

// Leader returns the index of the current leader (as seen by a running
// node).
func Leader(t testing.TB, c Cluster) int {
	t.Helper()
	idx := -1
	Poll(t, 30*time.Second, "a leader", func() error {
		for i := 0; i < c.Len(); i++ {
			if !c.Running(i) {
				continue
			}
			s, err := ClusterStatus(context.Background(), c, i)
			if err != nil {
				continue
			}
			for j := 0; j < c.Len(); j++ {
				if c.NodeID(j) == s.Meta.LeaderID && c.Running(j) {
					idx = j
					return nil
				}
			}
		}
		return fmt.Errorf("no running node names a running leader")
	})
	return idx
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }
