package raftmeta

import (
	"context"
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// fsm is the raft.FSM: a thin wrapper that locks the state and hands each
// entry to applyCommand. It also tracks the applied index so that
// linearizable reads can wait for it (read.go).
type fsm struct {
	mu sync.RWMutex
	st *state

	// appliedMu guards appliedCh, which is closed and replaced whenever the
	// applied index moves.
	appliedMu sync.Mutex
	appliedCh chan struct{}
}

var (
	_ raft.FSM         = (*fsm)(nil)
	_ raft.BatchingFSM = (*fsm)(nil)
)

func newFSM() *fsm { return &fsm{st: newState(), appliedCh: make(chan struct{})} }

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	f.mu.Lock()
	res := applyCommand(f.st, l.Data)
	f.st.applied = l.Index
	f.mu.Unlock()
	f.notifyApplied()
	return res
}

// ApplyBatch implements raft.BatchingFSM: one lock and one wake-up for a
// batch of committed entries (raft batches them when many are in flight).
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	out := make([]any, len(logs))
	f.mu.Lock()
	for i, l := range logs {
		if l.Type == raft.LogCommand {
			out[i] = applyCommand(f.st, l.Data)
		}
		f.st.applied = l.Index
	}
	f.mu.Unlock()
	f.notifyApplied()
	return out
}

func (f *fsm) notifyApplied() {
	f.appliedMu.Lock()
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
	f.appliedMu.Unlock()
}

// applied returns the index of the last entry applied.
func (f *fsm) applied() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.st.applied
}

// waitApplied blocks until the entry at index has been applied.
func (f *fsm) waitApplied(ctx context.Context, index uint64) error {
	for {
		f.appliedMu.Lock()
		ch := f.appliedCh
		f.appliedMu.Unlock()
		if f.applied() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// read runs fn with the state under the read lock.
func (f *fsm) read(fn func(st *state)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.st)
}

// Snapshot implements raft.FSM: it captures a cheap view; Persist does the I/O.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return &snapshot{st: f.st.view()}, nil
}

// Restore implements raft.FSM: it builds fresh state and swaps it in.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
	f.notifyApplied()
	return nil
}
