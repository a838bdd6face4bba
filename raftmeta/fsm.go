package raftmeta

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// fsm is the raft.FSM: a thin wrapper that locks the state and hands the
// entry to applyCommand.
type fsm struct {
	mu sync.RWMutex
	st *state
	// applied is the index of the last entry applied.
	applied uint64
	// onApply, if set, is called after each apply (under no lock) with the index.
	onApply func(index uint64)
}

var _ raft.FSM = (*fsm)(nil)

func newFSM() *fsm { return &fsm{st: newState()} }

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any {
	f.mu.Lock()
	res := applyCommand(f.st, l.Data)
	f.applied = l.Index
	f.mu.Unlock()
	if f.onApply != nil {
		f.onApply(l.Index)
	}
	return res
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
	return nil
}
