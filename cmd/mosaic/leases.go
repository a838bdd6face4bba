package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/fusefs"
	"github.com/mosaicimg/mosaic/raftmeta"
)

// leaseKeeper holds this host's in-use lease in the replicated metadata:
// the manifest roots of the images open on its mount, so that every
// storage node's GC keeps their chunks even after the images are deleted.
// The lease is taken on an image's first open (before the open checks the
// record: either the GC that follows the delete sees the lease, or the
// open sees the delete), renewed every ttl/4 while files are open, and
// released after the last close. A host that dies stops renewing and its
// lease lapses after ttl.
type leaseKeeper struct {
	meta *raftmeta.Node
	host string
	open *fusefs.OpenImages
	ttl  time.Duration
	log  *slog.Logger

	mu   sync.Mutex // one proposal at a time, each with the current set
	held bool
}

func newLeaseKeeper(meta *raftmeta.Node, host string, open *fusefs.OpenImages, ttl time.Duration, log *slog.Logger) *leaseKeeper {
	k := &leaseKeeper{meta: meta, host: host, open: open, ttl: ttl, log: log}
	open.OnFirstOpen(k.firstOpen)
	return k
}

// put proposes the current set of open roots (none: releases the lease).
func (k *leaseKeeper) put(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	roots, _ := k.open.LiveRoots(ctx)
	if len(roots) == 0 && !k.held {
		return nil
	}
	if err := k.meta.PutLeases(ctx, k.host, roots, k.ttl); err != nil {
		return err
	}
	k.held = len(roots) > 0
	return nil
}

// firstOpen takes the lease before a first open goes on. Without a
// leader the open still proceeds (the VM matters more than the lease): it
// is logged, and the next renewal retries.
func (k *leaseKeeper) firstOpen(ctx context.Context, root engine.ChunkID) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := k.put(ctx); err != nil {
		k.log.Warn("cannot take the in-use lease of an opened image; GC protection after a delete starts at the next renewal",
			"root", root, "err", err)
	}
}

// run renews the lease until ctx ends, then releases it.
func (k *leaseKeeper) run(ctx context.Context) {
	t := time.NewTicker(k.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if err := k.put(rctx); err != nil {
				k.log.Warn("release the in-use lease", "err", err)
			}
			cancel()
			return
		case <-t.C:
			rctx, cancel := context.WithTimeout(ctx, k.ttl/4)
			if err := k.put(rctx); err != nil && ctx.Err() == nil {
				k.log.Warn("renew the in-use lease", "err", err)
			}
			cancel()
		}
	}
}

// start runs the keeper in the background; the returned stop releases
// the lease (call it after unmounting) and waits.
func (k *leaseKeeper) start() (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); k.run(ctx) }()
	return func() error { cancel(); <-done; return nil }
}
