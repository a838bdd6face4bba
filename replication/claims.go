package replication

import (
	"context"
	"sync"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// claims remembers the chunks this node has claimed on other nodes for
// its uploads, and renews those claims while the uploads still pin the
// chunks locally. A claim is a lease on the claimed node (Peer.ClaimChunks):
// it keeps the chunk from that node's GC until the record referring to it
// is committed and applied there. Renewal makes the lease last as long as
// the upload does (a multi-hour upload of a huge image keeps its chunks),
// and lets it lapse at most one ClaimTTL after the upload ended, so a
// deleted image's chunks are collectable soon after.
type claims struct {
	pins  *engine.Pins
	claim func(ctx context.Context, addr string, ids []engine.ChunkID) ([]bool, error)
	cfg   Config

	mu     sync.Mutex
	byAddr map[string]map[engine.ChunkID]struct{}

	stop chan struct{}
	done chan struct{}
}

func newClaims(cfg Config, claim func(ctx context.Context, addr string, ids []engine.ChunkID) ([]bool, error)) *claims {
	c := &claims{pins: cfg.LocalPins, claim: claim, cfg: cfg,
		byAddr: map[string]map[engine.ChunkID]struct{}{}, stop: make(chan struct{}), done: make(chan struct{})}
	if c.pins == nil {
		close(c.done)
		return c
	}
	go c.run()
	return c
}

// record notes claims made on addr.
func (c *claims) record(addr string, ids []engine.ChunkID) {
	if c.pins == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byAddr[addr]
	if m == nil {
		m = map[engine.ChunkID]struct{}{}
		c.byAddr[addr] = m
	}
	for _, id := range ids {
		m[id] = struct{}{}
	}
}

func (c *claims) close() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

func (c *claims) run() {
	defer close(c.done)
	t := time.NewTicker(c.cfg.ClaimTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			c.renew()
		}
	}
}

// renew drops the claims whose chunks no upload pins any more and claims
// the others again.
func (c *claims) renew() {
	due := map[string][]engine.ChunkID{}
	c.mu.Lock()
	for addr, m := range c.byAddr {
		for id := range m {
			if c.pins.IsPinned(id) {
				due[addr] = append(due[addr], id)
			} else {
				delete(m, id)
			}
		}
		if len(m) == 0 {
			delete(c.byAddr, addr)
		}
	}
	c.mu.Unlock()
	for addr, ids := range due {
		for len(ids) > 0 {
			n := min(len(ids), maxClaimBatch)
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
			_, err := c.claim(ctx, addr, ids[:n])
			cancel()
			if err != nil {
				// The upload's Sync notices an unreachable node; the
				// lease there lapses, which costs at most a copy that
				// repair restores.
				c.cfg.Logger.Warn("renew chunk claims", "node", addr, "chunks", n, "err", err)
				break
			}
			ids = ids[n:]
		}
	}
}

// maxClaimBatch is the most IDs one claim request carries (the Peer reads
// at most 1<<16).
const maxClaimBatch = 1 << 15
