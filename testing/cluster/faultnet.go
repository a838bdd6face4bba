package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
)

// faultNet is a loopback network whose links between nodes can be cut.
// Every node dials through its own view (faultNet.node), so a dial knows
// both ends; cutting a link refuses new dials and closes open connections.
type faultNet struct {
	mu     sync.Mutex
	owner  map[string]int // listen address → node index
	cut    map[[2]int]bool
	conns  map[*faultConn]struct{}
	dialer net.Dialer
}

func newFaultNet() *faultNet {
	return &faultNet{owner: map[string]int{}, cut: map[[2]int]bool{}, conns: map[*faultConn]struct{}{}}
}

// errPartitioned is what a dial across a cut link returns.
var errPartitioned = errors.New("faultnet: link cut (partition)")

type faultConn struct {
	net.Conn
	fn       *faultNet
	from, to int
}

func (c *faultConn) Close() error {
	c.fn.mu.Lock()
	delete(c.fn.conns, c)
	c.fn.mu.Unlock()
	return c.Conn.Close()
}

// nodeNet is node i's view; it implements raftmeta.Network.
type nodeNet struct {
	fn *faultNet
	i  int
}

func (fn *faultNet) node(i int) *nodeNet { return &nodeNet{fn, i} }

func (n *nodeNet) Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	n.fn.mu.Lock()
	n.fn.owner[l.Addr().String()] = n.i
	n.fn.mu.Unlock()
	return l, nil
}

func (n *nodeNet) Dial(ctx context.Context, addr string) (net.Conn, error) {
	fn := n.fn
	fn.mu.Lock()
	to, known := fn.owner[addr]
	blocked := known && fn.cut[[2]int{n.i, to}]
	fn.mu.Unlock()
	if blocked {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: fmt.Errorf("%w: node %d to %d", errPartitioned, n.i, to)}
	}
	c, err := fn.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if !known {
		return c, nil
	}
	fc := &faultConn{Conn: c, fn: fn, from: n.i, to: to}
	fn.mu.Lock()
	fn.conns[fc] = struct{}{}
	fn.mu.Unlock()
	return fc, nil
}

// isolate cuts every link between node i and the others (both ways) and
// closes their connections.
func (fn *faultNet) isolate(i, n int) {
	fn.mu.Lock()
	for j := 0; j < n; j++ {
		if j != i {
			fn.cut[[2]int{i, j}], fn.cut[[2]int{j, i}] = true, true
		}
	}
	var victims []*faultConn
	for c := range fn.conns {
		if c.from == i || c.to == i {
			victims = append(victims, c)
		}
	}
	fn.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

// heal restores every link.
func (fn *faultNet) heal() {
	fn.mu.Lock()
	clear(fn.cut)
	fn.mu.Unlock()
}

// dropNode closes every connection to or from node i (its process died).
func (fn *faultNet) dropNode(i int) {
	fn.mu.Lock()
	var victims []*faultConn
	for c := range fn.conns {
		if c.from == i || c.to == i {
			victims = append(victims, c)
		}
	}
	fn.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}
