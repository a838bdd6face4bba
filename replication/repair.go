package replication

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"golang.org/x/sync/errgroup"
)

// LiveManifests lists the manifest roots whose chunks must be kept: those
// of every image that is not deleted (cmd adapts the image store). It
// should read linearizably, so a node that just started or rejoined sees
// every image before it decides what it lacks.
type LiveManifests interface {
	LiveManifests(ctx context.Context) ([]engine.ChunkID, error)
}

// LiveFunc adapts a function to LiveManifests.
type LiveFunc func(ctx context.Context) ([]engine.ChunkID, error)

// LiveManifests implements LiveManifests.
func (f LiveFunc) LiveManifests(ctx context.Context) ([]engine.ChunkID, error) { return f(ctx) }

// RepairProgress is the state of a node's repairer.
type RepairProgress struct {
	// State is "idle" or "running".
	State string `json:"state"`
	// Passes counts completed passes; Reason says why the latest started.
	Passes   int       `json:"passes"`
	Reason   string    `json:"reason,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Seconds is the duration of the latest completed pass.
	Seconds float64 `json:"seconds"`
	// Membership is the storage membership the latest pass placed for.
	Membership string `json:"membership,omitempty"`
	// ChunksTotal is the number of distinct chunks live images reference;
	// ChunksOwned how many of them this node owns; ChunksChecked how many
	// owned chunks the pass has looked at; ChunksFetched and BytesFetched
	// what it copied here; Missing what it could not find anywhere.
	ChunksTotal   int64 `json:"chunks_total"`
	ChunksOwned   int64 `json:"chunks_owned"`
	ChunksChecked int64 `json:"chunks_checked"`
	ChunksFetched int64 `json:"chunks_fetched"`
	BytesFetched  int64 `json:"bytes_fetched"`
	Missing       int64 `json:"missing"`
	// Trimmed counts surplus copies deleted (chunks this node no longer
	// owns whose owners all hold them).
	Trimmed   int64  `json:"trimmed"`
	LastError string `json:"last_error,omitempty"`
}

// Repairer restores this node's share of R copies: after every change of
// the storage membership, at start and every RepairInterval, it walks the
// live manifests and pulls each chunk it owns but lacks from the other
// nodes. Each node repairs itself, so a join moves data to the new node
// and a removal re-creates the lost copies on the chunks' new owners.
type Repairer struct {
	cfg   Config
	store *Store
	live  LiveManifests

	trigger chan string
	stop    chan struct{}
	wg      sync.WaitGroup

	mu   sync.Mutex
	prog RepairProgress
	// counters of the running pass
	checked, fetched, bytes, missing, trimmed atomic.Int64
	// again asks the loop for another pass soon (surplus copies whose
	// owners did not all hold them yet).
	again atomic.Bool
}

// NewRepairer returns a repairer for store; Start runs it. Besides pulling
// what this node owns and lacks, it trims: a live chunk this node holds but
// no longer owns is deleted once every owner has confirmed a durable copy —
// what completes a rebalance after a join.
func NewRepairer(store *Store, live LiveManifests) *Repairer {
	return &Repairer{cfg: store.cfg, store: store, live: live, trigger: make(chan string, 1),
		stop: make(chan struct{}), prog: RepairProgress{State: "idle"}}
}

// Start runs passes in the background until Close.
func (r *Repairer) Start() {
	r.wg.Add(1)
	go r.loop()
}

// Close stops the repairer and waits for it.
func (r *Repairer) Close() error {
	close(r.stop)
	r.wg.Wait()
	return nil
}

// Trigger asks for a pass soon.
func (r *Repairer) Trigger(reason string) {
	select {
	case r.trigger <- reason:
	default:
	}
}

// Progress returns the repairer's state.
func (r *Repairer) Progress() RepairProgress {
	r.mu.Lock()
	p := r.prog
	r.mu.Unlock()
	if p.State == "running" {
		p.ChunksChecked, p.ChunksFetched = r.checked.Load(), r.fetched.Load()
		p.BytesFetched, p.Missing, p.Trimmed = r.bytes.Load(), r.missing.Load(), r.trimmed.Load()
	}
	return p
}

func (r *Repairer) loop() {
	defer r.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-r.stop
		cancel()
	}()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	next := time.Now().Add(2 * time.Second) // first pass soon after start
	lastSig := ""
	for {
		reason := ""
		select {
		case <-r.stop:
			return
		case reason = <-r.trigger:
		case <-poll.C:
			sig := r.store.ranking().signature()
			if sig == "" {
				continue // the registry is not known yet
			}
			if sig != lastSig {
				reason = "membership change"
				if lastSig == "" {
					reason = "start"
				}
				lastSig = sig
			} else if time.Now().After(next) {
				reason = "periodic"
			}
		}
		if reason == "" {
			continue
		}
		next = time.Now().Add(r.cfg.RepairInterval)
		if err := r.pass(ctx, reason); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Warn("repair pass failed; retrying soon", "reason", reason, "err", err)
			next = time.Now().Add(5 * time.Second)
		}
		if r.again.Swap(false) {
			next = time.Now().Add(5 * time.Second)
		}
	}
}

// Pass runs one repair pass now (tests and `mosaic cluster repair`).
func (r *Repairer) Pass(ctx context.Context) error { return r.pass(ctx, "requested") }

func (r *Repairer) pass(ctx context.Context, reason string) (err error) {
	rk := r.store.ranking()
	start := time.Now()
	r.checked.Store(0)
	r.fetched.Store(0)
	r.bytes.Store(0)
	r.missing.Store(0)
	r.trimmed.Store(0)
	r.mu.Lock()
	r.prog.State, r.prog.Reason, r.prog.Started = "running", reason, start
	r.prog.Membership = rk.signature()
	r.prog.ChunksTotal, r.prog.ChunksOwned = 0, 0
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.prog.State = "idle"
		r.prog.ChunksChecked, r.prog.ChunksFetched = r.checked.Load(), r.fetched.Load()
		r.prog.BytesFetched, r.prog.Missing, r.prog.Trimmed = r.bytes.Load(), r.missing.Load(), r.trimmed.Load()
		r.prog.LastError = ""
		if err != nil {
			r.prog.LastError = err.Error()
		} else {
			r.prog.Passes++
			r.prog.Finished = time.Now()
			r.prog.Seconds = time.Since(start).Seconds()
		}
		r.mu.Unlock()
	}()

	roots, err := r.live.LiveManifests(ctx)
	if err != nil {
		return fmt.Errorf("repair: list live images: %w", err)
	}
	seen := map[engine.ChunkID]struct{}{}
	var owned []engine.ChunkID
	add := func(id engine.ChunkID) {
		if id.IsZero() {
			return
		}
		if _, ok := seen[id]; ok {
			return
		}
		seen[id] = struct{}{}
		if rk.Owns(id, r.cfg.Replicas, r.cfg.SelfID) {
			owned = append(owned, id)
		}
	}
	var errs []error
	for _, root := range roots {
		blobs, err := engine.ManifestBlobIDs(ctx, r.store, root)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, id := range blobs {
			add(id)
		}
		m, err := engine.LoadManifest(ctx, r.store, root)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, c := range m.Chunks {
			add(c.ID)
		}
	}
	r.mu.Lock()
	r.prog.ChunksTotal, r.prog.ChunksOwned = int64(len(seen)), int64(len(owned))
	r.mu.Unlock()

	// Which owned chunks are missing here?
	local := r.store.local
	var lack []engine.ChunkID
	for _, id := range owned {
		has, err := local.Has(ctx, id)
		if err != nil {
			return fmt.Errorf("repair: %w", err)
		}
		if !has {
			lack = append(lack, id)
		}
		r.checked.Add(1)
	}
	// Fetch them in batches, each from the best other node that should
	// have it (another owner first); what a batch does not bring is
	// fetched one by one from every candidate.
	f := r.store.fetch
	groups := map[string][]engine.ChunkID{}
	addrs := map[string]string{}
	for _, id := range lack {
		cands := f.candidates(id)
		if len(cands) == 0 {
			r.missing.Add(1)
			continue
		}
		groups[cands[0].ID] = append(groups[cands[0].ID], id)
		addrs[cands[0].ID] = cands[0].Addr
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(r.cfg.RepairWorkers)
	var mu sync.Mutex
	store := func(id engine.ChunkID, b []byte) error {
		if err := local.Put(ectx, id, b); err != nil {
			return err
		}
		r.fetched.Add(1)
		r.bytes.Add(int64(len(b)))
		return nil
	}
	for src, ids := range groups {
		for len(ids) > 0 {
			batch := ids[:min(64, len(ids))]
			ids = ids[len(batch):]
			eg.Go(func() error {
				rctx, cancel := context.WithTimeout(ectx, r.cfg.RequestTimeout)
				got, err := f.c.getBatch(rctx, addrs[src], batch)
				cancel()
				if err != nil {
					if ectx.Err() != nil {
						return ectx.Err()
					}
					f.markDown(src, true)
				}
				for _, id := range batch {
					b, ok := got[id]
					if !ok {
						if b, err = f.Fetch(ectx, id, nil); err != nil {
							if ectx.Err() != nil {
								return ectx.Err()
							}
							r.missing.Add(1)
							mu.Lock()
							if len(errs) < 10 {
								errs = append(errs, err)
							}
							mu.Unlock()
							continue
						}
					}
					if err := store(id, b); err != nil {
						return err
					}
				}
				return nil
			})
		}
	}
	if err := eg.Wait(); err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	if err := local.Sync(ctx); err != nil {
		return fmt.Errorf("repair: sync: %w", err)
	}
	if r.fetched.Load() > 0 || r.missing.Load() > 0 {
		r.cfg.Logger.Info("repair pass", "reason", reason, "owned", len(owned), "fetched", r.fetched.Load(),
			"bytes", r.bytes.Load(), "missing", r.missing.Load(), "seconds", time.Since(start).Seconds())
	}
	if len(errs) > 0 {
		return fmt.Errorf("repair: %d problems: %w", len(errs), errors.Join(errs...))
	}
	// Trim only after a clean pass under a membership that did not change
	// while it ran, and only as a storage member: a node marked down (or a
	// non-voter) owns nothing for now, but a node marked down is likely to
	// be marked up again soon and would have to fetch its share back.
	if r.store.ranking().signature() == rk.signature() && slices.ContainsFunc(rk.members, func(m Member) bool { return m.ID == r.cfg.SelfID }) {
		if err := r.trim(ctx, rk, seen); err != nil {
			return fmt.Errorf("repair: trim: %w", err)
		}
	}
	return nil
}

// trim deletes local copies of live chunks this node does not own, once
// every owner has reported the chunk present (claim, which also pins it
// there) and has synced. That confirmation is what makes it safe, not the
// local pins: an upload that relied on this copy (claimed it here under an
// older membership) needs R copies, and the current owners hold them; owners
// never trim what they own and GC never deletes a live chunk. (Local pins
// would keep every chunk an upload claimed here for the lease's hour.) A
// membership change during the trim makes the next pass re-fetch whatever
// this node owns again. Unreferenced chunks are GC's business.
func (r *Repairer) trim(ctx context.Context, rk *Ranking, live map[engine.ChunkID]struct{}) error {
	local := r.store.local
	self, R := r.cfg.SelfID, r.cfg.Replicas
	perOwner := map[string][]engine.ChunkID{}
	addr := map[string]string{}
	var surplus []engine.ChunkID
	for id := range live {
		owners := rk.Owners(id, R)
		if rk.Len() == 0 || slices.ContainsFunc(owners, func(m Member) bool { return m.ID == self }) {
			continue
		}
		has, err := local.Has(ctx, id)
		if err != nil {
			return err
		}
		if !has {
			continue
		}
		surplus = append(surplus, id)
		for _, o := range owners {
			perOwner[o.ID] = append(perOwner[o.ID], id)
			addr[o.ID] = o.Addr
		}
	}
	if len(surplus) == 0 {
		return nil
	}
	confirmed := map[engine.ChunkID]int{}
	c := r.store.fetch.c
	failed := map[string]bool{} // owners that could not be asked (down): their chunks stay
owners:
	for node, ids := range perOwner {
		for len(ids) > 0 {
			batch := ids[:min(len(ids), 4096)]
			ids = ids[len(batch):]
			rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
			have, err := c.claim(rctx, addr[node], batch)
			cancel()
			if err != nil {
				failed[node] = true
				continue owners
			}
			for i, ok := range have {
				if ok {
					confirmed[batch[i]]++
				}
			}
		}
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		if err := c.sync(rctx, addr[node]); err != nil {
			failed[node] = true
		}
		cancel()
	}
	var drop []engine.ChunkID
	for _, id := range surplus {
		owners := rk.Owners(id, R)
		if slices.ContainsFunc(owners, func(m Member) bool { return failed[m.ID] }) {
			continue // an owner is unreachable: keep this copy; a later pass retries
		}
		if confirmed[id] == len(owners) {
			drop = append(drop, id)
		} else {
			r.again.Store(true) // owners still fetching: look again soon
		}
	}
	if len(drop) == 0 {
		return nil
	}
	if err := local.DeleteChunks(ctx, drop); err != nil {
		return err
	}
	r.trimmed.Add(int64(len(drop)))
	r.cfg.Logger.Info("trimmed surplus copies", "chunks", r.trimmed.Load())
	return nil
}
