package pebblestore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/mosaicimg/mosaic/engine"
	"github.com/mosaicimg/mosaic/engine/pebblestore"
	"github.com/mosaicimg/mosaic/testing/chunkstoretest"
)

// diskFull injects ENOSPC into every write and sync while on.
type diskFull struct{ on atomic.Bool }

func (d *diskFull) MaybeError(op errorfs.Op) error {
	if !d.on.Load() {
		return nil
	}
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData,
		errorfs.OpFileSyncTo, errorfs.OpCreate:
		return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
	}
	return nil
}

func (d *diskFull) String() string { return "diskFull" }

func TestSyncFailsCleanlyWhenDiskIsFull(t *testing.T) {
	inj := &diskFull{}
	s := openStore(t, pebblestore.Config{FS: errorfs.Wrap(vfs.Default, inj), Dir: t.TempDir()})
	ctx := t.Context()
	before := chunkstoretest.Payloads(1)[0]
	idBefore := engine.SumChunk(before)
	if err := s.Put(ctx, idBefore, before); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	inj.on.Store(true)
	p := chunkstoretest.Payloads(2)[3]
	id := engine.SumChunk(p)
	errc := make(chan error, 1)
	go func() {
		if err := s.Put(ctx, id, p); err != nil {
			errc <- err
			return
		}
		errc <- s.Sync(ctx)
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, engine.ErrNoSpace) {
			t.Fatalf("put+sync on a full disk: %v, want ErrNoSpace", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sync on a full disk did not return within 30 s")
	}
	// Reads keep working, and once space is back so do writes.
	if _, err := s.Get(ctx, idBefore, nil); err != nil {
		t.Fatalf("get while the disk is full: %v", err)
	}
	inj.on.Store(false)
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := s.Put(ctx, id, p)
		if err == nil {
			err = s.Sync(ctx)
		}
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after the disk freed up: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err := s.Get(ctx, id, nil); err != nil || len(got) != len(p) {
		t.Fatalf("get after recovery: %v", err)
	}
}

var _ = filepath.Join
var _ context.Context
