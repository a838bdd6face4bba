package replication

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// Store is the replicating engine.ChunkStore of a node (see the package
// doc). It also implements engine.GCStore by delegating listing and
// deletion to the local store.
type Store struct {
	cfg     Config
	local   engine.GCStore
	members Membership
	fetch   *Fetcher
	claims  *claims

	mu          sync.Mutex
	pushers     map[string]*pusher
	epoch       uint64
	outstanding map[uint64]int // epoch → queued items not finished
	changed     chan struct{}  // closed and replaced when outstanding shrinks
	failed      []*item        // pushes that failed, for Sync to re-place
	closed      bool
	wg          sync.WaitGroup
}

var _ engine.GCStore = (*Store)(nil)

// item is one chunk queued for one remote node.
type item struct {
	id    engine.ChunkID
	data  []byte // shared between the items of one Put; never modified
	to    Member
	epoch uint64
}

// NewStore returns the replicating store over local.
func NewStore(cfg Config, local engine.GCStore, members Membership) (*Store, error) {
	f, err := NewFetcher(cfg, members)
	if err != nil {
		return nil, err
	}
	return &Store{cfg: f.cfg, local: local, members: members, fetch: f, claims: newClaims(f.cfg, f.c.claim),
		pushers: map[string]*pusher{}, outstanding: map[uint64]int{}, changed: make(chan struct{})}, nil
}

// Fetcher returns the store's remote read path.
func (s *Store) Fetcher() *Fetcher { return s.fetch }

// Local returns the node's own store.
func (s *Store) Local() engine.GCStore { return s.local }

// Close stops the pushers. Queued chunks not yet synced are dropped (their
// uploads fail at Sync).
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for _, p := range s.pushers {
		close(p.ch)
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.claims.close()
	return nil
}

func (s *Store) ranking() *Ranking { return NewRanking(s.members.Members()) }

// owners returns id's owners; with no storage member known (a single node
// still registering itself) the node itself.
func (s *Store) owners(r *Ranking, id engine.ChunkID) []Member {
	if r.Len() == 0 {
		return []Member{{ID: s.cfg.SelfID, Storage: true}}
	}
	return r.Owners(id, s.cfg.Replicas)
}

// Has implements engine.ChunkStore. It is true only when this node is the
// chunk's sole owner and holds it; otherwise Put decides per owner (a
// remote owner is asked in batches), so an ingest never skips a chunk that
// lacks copies.
func (s *Store) Has(ctx context.Context, id engine.ChunkID) (bool, error) {
	own := s.owners(s.ranking(), id)
	if len(own) != 1 || own[0].ID != s.cfg.SelfID {
		return false, nil
	}
	return s.local.Has(ctx, id)
}

// Put stores data on this node if it is an owner and queues it for the
// remote owners. It may block when their queues are full.
func (s *Store) Put(ctx context.Context, id engine.ChunkID, data []byte) error {
	var shared []byte
	for _, o := range s.owners(s.ranking(), id) {
		if o.ID == s.cfg.SelfID {
			ok, err := s.local.Has(ctx, id)
			if err != nil {
				return fmt.Errorf("replication: put %s: %w", id, err)
			}
			if !ok {
				if err := s.local.Put(ctx, id, data); err != nil {
					return fmt.Errorf("replication: put %s: %w", id, err)
				}
			}
			continue
		}
		if shared == nil {
			shared = append([]byte(nil), data...)
		}
		if err := s.enqueue(ctx, &item{id: id, data: shared, to: o}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) enqueue(ctx context.Context, it *item) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("replication: put %s: %w: store closed", it.id, engine.ErrUnavailable)
	}
	p := s.pushers[it.to.ID]
	if p == nil {
		p = &pusher{s: s, ch: make(chan *item, s.cfg.QueueChunks)}
		s.pushers[it.to.ID] = p
		for range 2 { // two batches in flight per node
			s.wg.Add(1)
			go p.run()
		}
	}
	it.epoch = s.epoch
	s.outstanding[it.epoch]++
	s.mu.Unlock()
	select {
	case p.ch <- it:
		return nil
	case <-ctx.Done():
		s.finish([]*item{it}, false)
		return ctx.Err()
	}
}

// finish records queued items as done: delivered, or failed (kept for
// Sync to re-place).
func (s *Store) finish(items []*item, failed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		if s.outstanding[it.epoch]--; s.outstanding[it.epoch] <= 0 {
			delete(s.outstanding, it.epoch)
		}
		if failed {
			s.failed = append(s.failed, it)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

// Sync makes every chunk Put before the call durable on each of its owners
// (or, for an owner that could not take it, on the next node of the
// chunk's ranking), so every chunk has R durable copies. It fails when
// that is impossible (too few reachable storage nodes).
func (s *Store) Sync(ctx context.Context) error {
	s.mu.Lock()
	e := s.epoch
	s.epoch++
	s.mu.Unlock()
	// Wait for every push queued before the call.
	for {
		s.mu.Lock()
		busy := false
		for ep := range s.outstanding {
			if ep <= e {
				busy = true
				break
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if !busy {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("replication: sync: %w", ctx.Err())
		}
	}
	s.mu.Lock()
	var failed []*item
	rest := s.failed[:0]
	for _, it := range s.failed {
		if it.epoch <= e {
			failed = append(failed, it)
		} else {
			rest = append(rest, it)
		}
	}
	s.failed = rest
	pushers := make(map[string]*pusher, len(s.pushers))
	for id, p := range s.pushers {
		pushers[id] = p
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	errs := make(chan error, len(pushers)+1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := s.local.Sync(ctx); err != nil {
			errs <- fmt.Errorf("replication: sync local store: %w", err)
		}
	}()
	for _, p := range pushers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.syncIfNeeded(ctx); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	if len(all) > 0 {
		return errors.Join(all...)
	}
	if len(failed) > 0 {
		return s.replace(ctx, failed)
	}
	return nil
}

// replace places the copies that pushes failed to deliver. Each chunk
// tries its intended owner once more (the failure may have been a slow
// request), then the next nodes of its ranking that are not owners; sends
// are batched per node and every node that took copies is synced. It fails
// when some chunk cannot reach R copies (too few reachable storage nodes).
func (s *Store) replace(ctx context.Context, failed []*item) error {
	r := s.ranking()
	byID := map[engine.ChunkID]*want{}
	var order []*want
	for _, it := range failed {
		w := byID[it.id]
		if w == nil {
			w = &want{id: it.id, data: it.data}
			byID[it.id] = w
			order = append(order, w)
		}
		w.need++
		w.cands = append(w.cands, it.to)
	}
	for _, w := range order {
		owners := map[string]bool{}
		for _, o := range s.owners(r, w.id) {
			owners[o.ID] = true
		}
		for _, m := range r.Rank(w.id) {
			if !owners[m.ID] {
				w.cands = append(w.cands, m)
			}
		}
	}
	bad := map[string]bool{}    // nodes that failed during this call
	took := map[string]string{} // node ID → address of nodes that took copies ("" = this node)
	for {
		groups := map[string][]*want{}
		targets := map[string]Member{}
		for _, w := range order {
			if w.need == 0 {
				continue
			}
			for len(w.cands) > 0 && bad[w.cands[0].ID] {
				w.cands = w.cands[1:]
			}
			if len(w.cands) == 0 {
				return fmt.Errorf("replication: chunk %s: %w: %d of its %d copies could not be placed (too few reachable storage nodes)",
					w.id, engine.ErrUnavailable, w.need, min(s.cfg.Replicas, r.Len()))
			}
			m := w.cands[0]
			groups[m.ID] = append(groups[m.ID], w)
			targets[m.ID] = m
		}
		if len(groups) == 0 {
			break
		}
		for id, ws := range groups {
			m := targets[id]
			err := s.placeOn(ctx, m, ws)
			for _, w := range ws {
				w.cands = w.cands[1:]
			}
			if err != nil {
				s.cfg.Logger.Warn("re-place chunks: node failed", "node", id, "chunks", len(ws), "err", err)
				bad[id] = true
				continue
			}
			took[id] = m.Addr
			if id == s.cfg.SelfID {
				took[id] = ""
			}
			for _, w := range ws {
				w.need--
			}
		}
	}
	for id, addr := range took {
		var err error
		if addr == "" {
			err = s.local.Sync(ctx)
		} else {
			rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			err = s.fetch.c.sync(rctx, addr)
			cancel()
		}
		if err != nil {
			return fmt.Errorf("replication: sync re-placed copies on %s: %w", id, err)
		}
	}
	return nil
}

// want is a chunk Sync still has to place copies of.
type want struct {
	id    engine.ChunkID
	data  []byte
	need  int
	cands []Member // in order of preference
}

// placeOn stores chunks on node m (this node or a remote one), in batches.
func (s *Store) placeOn(ctx context.Context, m Member, ws []*want) error {
	if m.ID == s.cfg.SelfID {
		for _, w := range ws {
			if err := s.local.Put(ctx, w.id, w.data); err != nil {
				return err
			}
		}
		return nil
	}
	// Claim first, as the pushers do: the chunks get a lease on m before
	// they are sent, so m's GC keeps them until the record is committed.
	have := make([]bool, 0, len(ws))
	for i := 0; i < len(ws); i += maxClaimBatch {
		ids := make([]engine.ChunkID, 0, min(len(ws)-i, maxClaimBatch))
		for _, w := range ws[i:min(len(ws), i+maxClaimBatch)] {
			ids = append(ids, w.id)
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		h, err := s.fetch.c.claim(rctx, m.Addr, ids)
		cancel()
		if err != nil {
			s.fetch.markDown(m.ID, true)
			return err
		}
		s.claims.record(m.Addr, ids)
		have = append(have, h...)
	}
	var frames []byte
	n := 0
	flush := func() error {
		if n == 0 {
			return nil
		}
		rctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		defer cancel()
		err := s.fetch.c.put(rctx, m.Addr, frames, n)
		frames, n = frames[:0], 0
		if err != nil {
			s.fetch.markDown(m.ID, true)
		}
		return err
	}
	for i, w := range ws {
		if have[i] {
			continue
		}
		frames = appendFrame(frames, w.id, w.data)
		n++
		if len(frames) >= s.cfg.BatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// Get implements engine.ChunkStore: the local store, else the owners. An
// owner that lacked the chunk keeps the fetched copy (read repair).
func (s *Store) Get(ctx context.Context, id engine.ChunkID, buf []byte) ([]byte, error) {
	b, err := s.local.Get(ctx, id, buf)
	if err == nil || !errors.Is(err, engine.ErrNotFound) {
		return b, err
	}
	b, err = s.fetch.Fetch(ctx, id, buf)
	if err != nil {
		return nil, err
	}
	if s.ranking().Owns(id, s.cfg.Replicas, s.cfg.SelfID) {
		if perr := s.local.Put(ctx, id, b); perr != nil {
			s.cfg.Logger.Warn("read repair: keep fetched chunk", "chunk", id, "err", perr)
		}
	}
	return b, nil
}

// ListChunks implements engine.GCStore (the local store's chunks).
func (s *Store) ListChunks(ctx context.Context) iter.Seq2[engine.ChunkInfo, error] {
	return s.local.ListChunks(ctx)
}

// DeleteChunks implements engine.GCStore (on the local store).
func (s *Store) DeleteChunks(ctx context.Context, ids []engine.ChunkID) error {
	return s.local.DeleteChunks(ctx, ids)
}

// pusher sends the chunks queued for one remote node in batches: claim
// (which are missing?) then put the missing ones.
type pusher struct {
	s  *Store
	ch chan *item

	mu     sync.Mutex
	addr   string
	acked  uint64 // batches delivered
	synced uint64 // acked value covered by the last completed sync
	syncMu sync.Mutex
}

func (p *pusher) run() {
	defer p.s.wg.Done()
	cfg := p.s.cfg
	for first := range p.ch {
		batch := []*item{first}
		size := len(first.data)
	gather:
		for size < cfg.BatchBytes && len(batch) < 1024 {
			select {
			case it, ok := <-p.ch:
				if !ok {
					break gather
				}
				batch = append(batch, it)
				size += len(it.data)
			default:
				break gather
			}
		}
		err := p.send(batch)
		if err != nil {
			cfg.Logger.Warn("push chunks failed; they will be placed on other nodes", "node", first.to.ID, "chunks", len(batch), "err", err)
		}
		p.s.finish(batch, err != nil)
	}
}

func (p *pusher) send(batch []*item) error {
	to := batch[len(batch)-1].to
	p.mu.Lock()
	p.addr = to.Addr
	p.mu.Unlock()
	f := p.s.fetch
	if f.isDown(to.ID) {
		return fmt.Errorf("node %s: %w: failed recently", to.ID, engine.ErrUnavailable)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.s.cfg.RequestTimeout)
	defer cancel()
	ids := make([]engine.ChunkID, len(batch))
	for i, it := range batch {
		ids[i] = it.id
	}
	have, err := f.c.claim(ctx, to.Addr, ids)
	if err != nil {
		f.markDown(to.ID, true)
		return err
	}
	p.s.claims.record(to.Addr, ids)
	var frames []byte
	n := 0
	for i, it := range batch {
		if !have[i] {
			frames = appendFrame(frames, it.id, it.data)
			n++
		}
	}
	if n > 0 {
		if err := f.c.put(ctx, to.Addr, frames, n); err != nil {
			f.markDown(to.ID, true)
			return err
		}
	}
	p.mu.Lock()
	p.acked++
	p.mu.Unlock()
	return nil
}

// syncIfNeeded syncs the node if batches were delivered since its last
// sync.
func (p *pusher) syncIfNeeded(ctx context.Context) error {
	p.syncMu.Lock()
	defer p.syncMu.Unlock()
	p.mu.Lock()
	target, addr := p.acked, p.addr
	done := p.synced >= target
	p.mu.Unlock()
	if done {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, p.s.cfg.RequestTimeout)
	defer cancel()
	if err := p.s.fetch.c.sync(rctx, addr); err != nil {
		return fmt.Errorf("replication: sync %s: %w", addr, err)
	}
	p.mu.Lock()
	p.synced = max(p.synced, target)
	p.mu.Unlock()
	return nil
}

// isDown reports whether a node failed within the last few seconds.
func (f *Fetcher) isDown(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.down[id]
	return ok && time.Since(t) < 2*time.Second
}
