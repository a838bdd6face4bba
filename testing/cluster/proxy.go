package cluster

import (
	"io"
	"net"
	"sync"
)

// proxy forwards one node's port. It tells the calling node by the
// connection's source IP (nodes dial from their own 127.0.0.x), and drops
// connections from nodes it is cut off from.
type proxy struct {
	ln     net.Listener
	target string
	self   int
	hostOf func(ip string) (int, bool)
	isCut  func(a, b int) bool

	mu    sync.Mutex
	conns map[net.Conn]int // accepted connection → source node (-1: a client)
	wg    sync.WaitGroup
}

func newProxy(listen, target string, self int, hostOf func(string) (int, bool), isCut func(a, b int) bool) (*proxy, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, target: target, self: self, hostOf: hostOf, isCut: isCut, conns: map[net.Conn]int{}}
	p.wg.Add(1)
	go p.serve()
	return p, nil
}

func (p *proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		src := -1
		if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
			if i, ok := p.hostOf(host); ok {
				src = i
			}
		}
		if src >= 0 && p.isCut(src, p.self) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go p.pipe(c, src)
	}
}

func (p *proxy) pipe(c net.Conn, src int) {
	defer p.wg.Done()
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = src, src
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
	c.Close()
	up.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// dropFrom closes open connections from node src (all nodes when src < 0
// is not asked for: clients are never dropped).
func (p *proxy) dropFrom(match func(src int) bool) {
	p.mu.Lock()
	var victims []net.Conn
	for c, src := range p.conns {
		if src >= 0 && match(src) {
			victims = append(victims, c)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

func (p *proxy) close() {
	p.ln.Close()
	p.dropFrom(func(int) bool { return true })
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
