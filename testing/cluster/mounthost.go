package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// MountHost is a `mosaic mount` process: a hypervisor host that follows
// the cluster as a Raft non-voter and serves the image tree at Dir from
// chunks it fetches from the storage nodes.
type MountHost struct {
	*harness.Process
	// Dir is the mounted image tree; DataDir the host's own state.
	Dir, DataDir string
	secret       string
}

// MountHostOptions tune StartMountHost.
type MountHostOptions struct {
	// Host is the loopback IP the host listens on; default 127.0.0.60.
	Host string
	// Extra are added to the `mosaic mount` arguments.
	Extra []string
}

// StartMountHost starts `mosaic mount --cluster <every running node>` with
// an empty data dir and waits until the tree is mounted and the host has
// joined the cluster's registry.
func StartMountHost(t testing.TB, c Cluster, o MountHostOptions) *MountHost {
	t.Helper()
	if o.Host == "" {
		o.Host = "127.0.0.60"
	}
	var via []string
	for i := 0; i < c.Len(); i++ {
		if c.Running(i) {
			via = append(via, c.APIAddr(i))
		}
	}
	tmp := t.TempDir()
	h := &MountHost{Dir: filepath.Join(tmp, "mnt"), DataDir: filepath.Join(tmp, "data"), secret: c.Secret()}
	port := func() string { return fmt.Sprint(harness.FreePort(t, o.Host)) }
	api := net.JoinHostPort(o.Host, port())
	args := []string{"mount", "--cluster", strings.Join(via, ","), "--data-dir", h.DataDir,
		"--api-addr", api, "--raft-addr", net.JoinHostPort(o.Host, port()), "--log-level", "info"}
	args = append(args, o.Extra...)
	args = append(args, h.Dir)
	h.Process = harness.NewProcess(t, api, args, []string{"MOSAIC_CLUSTER_SECRET=" + c.Secret()})
	h.Start()
	Poll(t, time.Minute, "the mount host joined", func() error {
		for i := 0; i < c.Len(); i++ {
			if !c.Running(i) {
				continue
			}
			s, err := ClusterStatus(context.Background(), c, i)
			if err != nil {
				return err
			}
			for _, n := range s.Meta.Nodes {
				if strings.HasPrefix(n.APIAddr, o.Host+":") {
					if n.Voter {
						return fmt.Errorf("the mount host registered as a voter: %+v", n)
					}
					return nil
				}
			}
			return fmt.Errorf("node %d's registry does not list the mount host yet", i)
		}
		return fmt.Errorf("no running node")
	})
	return h
}

// WaitImage waits until images/<id> is visible in the host's tree (its
// metadata arrived through Raft) and returns its path.
func (h *MountHost) WaitImage(t testing.TB, id string) string {
	t.Helper()
	p := filepath.Join(h.Dir, "images", id)
	Poll(t, 30*time.Second, "image "+id+" in the mount host's tree", func() error {
		_, err := os.Stat(p)
		return err
	})
	return p
}

// CacheStats are the counters of the host's chunk cache
// (engine.CachingStats as the host reports them).
type CacheStats struct {
	Hits, Misses, FetchedBytes, Evicted, UsedBytes, MaxBytes int64
	Chunks                                                   int
}

// CacheStats asks the host for its chunk cache's counters.
func (h *MountHost) CacheStats(t testing.TB) CacheStats {
	t.Helper()
	st, b, err := Do(context.Background(), "GET", h.URL()+"/internal/node/status", "", nil, "X-Mosaic-Cluster-Secret", h.secret)
	if err != nil || st != 200 {
		t.Fatalf("mount host status: %d %s %v", st, b, err)
	}
	var s struct {
		Cache CacheStats `json:"chunk_cache"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("mount host status: %v: %s", err, b)
	}
	return s.Cache
}
