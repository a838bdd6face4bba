package replication

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// Fetcher reads chunks from other nodes by ChunkID: the owners first, in
// rank order, then every other node; nodes that failed recently are tried
// last. Every chunk is verified against its ID before it is returned. It
// is a read-only engine.ChunkStore, for hosts that own no chunks.
type Fetcher struct {
	cfg     Config
	members Membership
	c       *client

	mu   sync.Mutex
	down map[string]time.Time // node ID → when it last failed
}

var _ engine.ChunkStore = (*Fetcher)(nil)

// NewFetcher returns a Fetcher over the cluster's members.
func NewFetcher(cfg Config, members Membership) (*Fetcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Fetcher{cfg: cfg, members: members, c: &client{hc: cfg.HTTPClient, secret: cfg.Secret},
		down: map[string]time.Time{}}, nil
}

// candidates orders the nodes to ask for id: owners in rank order, then the
// other storage nodes, then the rest; recently failed nodes go last.
func (f *Fetcher) candidates(id engine.ChunkID) []Member {
	ms := f.members.Members()
	ranked := NewRanking(ms).Rank(id)
	for _, m := range ms {
		if !m.Storage {
			ranked = append(ranked, m)
		}
	}
	var up, down []Member
	f.mu.Lock()
	for _, m := range ranked {
		if m.ID == f.cfg.SelfID {
			continue
		}
		if t, ok := f.down[m.ID]; ok && time.Since(t) < 10*time.Second {
			down = append(down, m)
		} else {
			up = append(up, m)
		}
	}
	f.mu.Unlock()
	return append(up, down...)
}

func (f *Fetcher) markDown(id string, failed bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if failed {
		f.down[id] = time.Now()
	} else {
		delete(f.down, id)
	}
}

// Fetch returns the verified chunk from another node.
func (f *Fetcher) Fetch(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	var errs []error
	for _, m := range f.candidates(id) {
		rctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
		b, err := f.c.get(rctx, m.Addr, id, buf)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			f.markDown(m.ID, !errors.Is(err, engine.ErrNotFound))
			errs = append(errs, err)
			continue
		}
		f.markDown(m.ID, false)
		if got := engine.SumChunk(b); got != id {
			f.cfg.Logger.Error("node served a corrupt chunk", "node", m.ID, "chunk", id, "got", got)
			errs = append(errs, &engine.CorruptError{ID: id, Got: got})
			continue
		}
		return b, nil
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("replication: fetch %s: %w: no other node to ask", id, engine.ErrNotFound)
	}
	kind := engine.ErrNotFound
	for _, e := range errs {
		if !errors.Is(e, engine.ErrNotFound) {
			kind = engine.ErrUnavailable
		}
	}
	return nil, fmt.Errorf("replication: fetch %s: %w: %w", id, kind, errors.Join(errs...))
}

// Get implements engine.ChunkStore.
func (f *Fetcher) Get(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	return f.Fetch(ctx, id, buf)
}

// Has implements engine.ChunkStore: a Fetcher holds nothing itself.
func (f *Fetcher) Has(context.Context, engine.ChunkID) (bool, error) { return false, nil }

// Put implements engine.ChunkStore: a Fetcher is read-only.
func (f *Fetcher) Put(context.Context, engine.ChunkID, []byte) error {
	return fmt.Errorf("replication: put: %w: the fetcher is read-only", engine.ErrUnsupported)
}

// Sync implements engine.ChunkStore.
func (f *Fetcher) Sync(context.Context) error { return nil }
