package cluster

import (
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// processes runs `mosaic serve` processes, node i on 127.0.0.(20+i), each
// behind proxies for its Raft and API ports (the addresses it advertises).
type processes struct {
	t      testing.TB
	o      Options
	secret string

	mu    sync.Mutex
	cut   map[[2]int]bool
	nodes []*procNode
}

type procNode struct {
	host    string
	id      string
	p       *harness.Process
	running atomic.Bool
	proxies []*proxy
	// advertised (proxied) API address
	advAPI string
}

// StartProcesses builds cmd/mosaic (or uses $MOSAIC_BIN) and starts n
// nodes: node 0 bootstraps, the others join through it.
func StartProcesses(t testing.TB, n int, o Options) Cluster {
	c := &processes{t: t, o: o, secret: newSecret(), cut: map[[2]int]bool{}}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			for _, p := range nd.proxies {
				p.close()
			}
		}
	})
	for range n {
		c.Add()
	}
	return c
}

func (c *processes) Len() int             { return len(c.nodes) }
func (c *processes) URL(i int) string     { return c.nodes[i].p.URL() }
func (c *processes) APIAddr(i int) string { return c.nodes[i].p.APIAddr }
func (c *processes) NodeID(i int) string  { return c.nodes[i].id }
func (c *processes) Secret() string       { return c.secret }
func (c *processes) Running(i int) bool   { return c.nodes[i].running.Load() }

func (c *processes) hostOf(ip string) (int, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, nd := range c.nodes {
		if nd.host == ip {
			return i, true
		}
	}
	return 0, false
}

func (c *processes) isCut(a, b int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cut[[2]int{a, b}]
}

func (c *processes) Add() int { return c.add(false) }

func (c *processes) AddNonVoter() int { return c.add(true) }

func (c *processes) add(nonVoter bool) int {
	c.t.Helper()
	i := len(c.nodes)
	host := fmt.Sprintf("127.0.0.%d", 20+i)
	port := func() string { return fmt.Sprint(harness.FreePort(c.t, host)) }
	api, raft := net.JoinHostPort(host, port()), net.JoinHostPort(host, port())
	advAPI, advRaft := net.JoinHostPort(host, port()), net.JoinHostPort(host, port())
	if c.o.Direct {
		advAPI, advRaft = api, raft
	}
	nd := &procNode{host: host, id: fmt.Sprintf("node%d", i), advAPI: advAPI}
	c.mu.Lock()
	c.nodes = append(c.nodes, nd)
	c.mu.Unlock()
	for _, pair := range [][2]string{{advAPI, api}, {advRaft, raft}} {
		if c.o.Direct {
			break
		}
		px, err := newProxy(pair[0], pair[1], i, c.hostOf, c.isCut)
		if err != nil {
			c.t.Fatalf("proxy for node %d: %v", i, err)
		}
		nd.proxies = append(nd.proxies, px)
	}
	args := []string{"serve", "--data-dir", filepath.Join(c.t.TempDir(), "data"), "--node-id", nd.id,
		"--api-addr", api, "--raft-addr", raft, "--advertise-api", advAPI, "--advertise-raft", advRaft,
		"--log-level", "info"}
	if c.o.Replicas > 0 {
		args = append(args, "--replicas", fmt.Sprint(c.o.Replicas))
	}
	if i > 0 {
		args = append(args, "--join", c.nodes[0].advAPI)
	}
	if nonVoter {
		args = append(args, "--nonvoter")
	}
	args = append(args, c.o.ExtraArgs...)
	nd.p = harness.NewProcess(c.t, api, args, []string{"MOSAIC_CLUSTER_SECRET=" + c.secret})
	nd.p.Start()
	nd.running.Store(true)
	return i
}

func (c *processes) Kill(i int) {
	c.nodes[i].p.Kill()
	c.nodes[i].running.Store(false)
}

func (c *processes) Restart(i int) {
	c.t.Helper()
	c.nodes[i].p.Start()
	c.nodes[i].running.Store(true)
}

func (c *processes) Partition(i int) {
	if c.o.Direct {
		c.t.Fatal("Partition needs the proxies (Options.Direct is set)")
	}
	c.mu.Lock()
	for j := range c.nodes {
		if j != i {
			c.cut[[2]int{i, j}], c.cut[[2]int{j, i}] = true, true
		}
	}
	c.mu.Unlock()
	for j, nd := range c.nodes {
		for _, px := range nd.proxies {
			if j == i {
				px.dropFrom(func(src int) bool { return src != i })
			} else {
				px.dropFrom(func(src int) bool { return src == i })
			}
		}
	}
}

func (c *processes) Heal() {
	c.mu.Lock()
	clear(c.cut)
	c.mu.Unlock()
}
