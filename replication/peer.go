package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// Peer is the receiving side of chunk traffic: the internal HTTP
// endpoints call it (it implements api.ChunkPeer).
type Peer struct {
	local engine.ChunkStore
	pins  *engine.Pins
	ttl   time.Duration

	mu     sync.Mutex
	leases []lease

	stop      chan struct{}
	stopOnce  sync.Once
	expirerWG sync.WaitGroup
}

// lease protects claimed chunks from local GC until it expires: a remote
// upload either decided not to send them because this node has them, or
// sends them right after the claim; either way its record is not committed
// yet. The claimant renews the claim while its upload runs.
type lease struct {
	until time.Time
	s     *engine.PinSession
}

// NewPeer returns the receiving side over the node's local store. pins
// must be the set this node's garbage collector honours.
func NewPeer(cfg Config, local engine.ChunkStore, pins *engine.Pins) *Peer {
	if cfg.ClaimTTL <= 0 {
		cfg.ClaimTTL = 10 * time.Minute
	}
	p := &Peer{local: local, pins: pins, ttl: cfg.ClaimTTL, stop: make(chan struct{})}
	p.expirerWG.Add(1)
	go p.expireLoop()
	return p
}

// expireLoop ends lapsed leases even when no claim arrives, so GC can
// reclaim their chunks.
func (p *Peer) expireLoop() {
	defer p.expirerWG.Done()
	t := time.NewTicker(max(p.ttl/6, 500*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.expire(now)
		}
	}
}

// LocalChunk returns a verified chunk from the local store only (a node
// asked for a chunk never asks further, so requests cannot loop).
func (p *Peer) LocalChunk(ctx context.Context, id engine.ChunkID) ([]byte, error) {
	return p.local.Get(ctx, id, nil)
}

// LocalChunks answers a batch request: the frames of the listed chunks
// this node holds (verified on read), in request order.
func (p *Peer) LocalChunks(ctx context.Context, r io.Reader) ([]byte, error) {
	ids, err := readIDs(r, 4096)
	if err != nil {
		return nil, err
	}
	var out, buf []byte
	for _, id := range ids {
		buf, err = p.local.Get(ctx, id, buf)
		if errors.Is(err, engine.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("replication: get %s: %w", id, err)
		}
		out = appendFrame(out, id, buf)
	}
	return out, nil
}

// ReceiveChunks stores a batch of frames, verifying each chunk against its
// ID first: no unverified byte is ever stored. The reply is the number
// stored.
func (p *Peer) ReceiveChunks(ctx context.Context, r io.Reader) ([]byte, error) {
	var n uint32
	err := readFrames(r, func(id engine.ChunkID, data []byte) error {
		if got := engine.SumChunk(data); got != id {
			return fmt.Errorf("replication: receive: %w", &engine.CorruptError{ID: id, Got: got})
		}
		if err := p.local.Put(ctx, id, data); err != nil {
			return fmt.Errorf("replication: receive %s: %w", id, err)
		}
		n++
		return nil
	})
	if err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint32(nil, n), nil
}

// ClaimChunks answers which of the listed chunks are present, pinning each
// before looking so this node's GC cannot delete a chunk it reported
// present while the claimant's upload completes.
func (p *Peer) ClaimChunks(ctx context.Context, r io.Reader) ([]byte, error) {
	ids, err := readIDs(r, 1<<16)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	p.expire(now)
	sess := p.pins.Begin()
	out := make([]byte, len(ids))
	for i, id := range ids {
		var has bool
		err := sess.Pin(id, func() error {
			var err error
			has, err = p.local.Has(ctx, id)
			return err
		})
		if err != nil {
			sess.End()
			return nil, fmt.Errorf("replication: claim %s: %w", id, err)
		}
		if has {
			out[i] = 1
		}
	}
	p.mu.Lock()
	p.leases = append(p.leases, lease{until: now.Add(p.ttl), s: sess})
	p.mu.Unlock()
	return out, nil
}

func (p *Peer) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := p.leases[:0]
	for _, l := range p.leases {
		if now.After(l.until) {
			l.s.End()
		} else {
			keep = append(keep, l)
		}
	}
	clear(p.leases[len(keep):])
	p.leases = keep
}

// SyncChunks makes every chunk received so far durable.
func (p *Peer) SyncChunks(ctx context.Context) error { return p.local.Sync(ctx) }

// Close stops lease expiry and releases every lease.
func (p *Peer) Close() error {
	p.stopOnce.Do(func() { close(p.stop) })
	p.expirerWG.Wait()
	p.expire(time.Now().Add(100 * 365 * 24 * time.Hour))
	return nil
}
