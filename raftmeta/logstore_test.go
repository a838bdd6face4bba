package raftmeta

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// TestLogStoreSurvivesCrash: every StoreLogs and Set that returned is in a
// crash clone (only synced data survives), so an acknowledged entry outlives
// kill -9. testing/cluster kills real processes for the same property.
func TestLogStoreSurvivesCrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	s, err := OpenLogStore("log", fs)
	if err != nil {
		t.Fatal(err)
	}
	for i := uint64(1); i <= 300; i += 3 {
		batch := []*raft.Log{
			{Index: i, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i)},
			{Index: i + 1, Term: 1, Type: raft.LogCommand, Data: fmt.Appendf(nil, "entry %d", i+1)},
			{Index: i + 2, Term: 2, Type: raft.LogNoop},
		}
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(1, 30); err != nil {
		t.Fatal(err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{}) // exactly what was synced
	r, err := OpenLogStore("log", crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first, _ := r.FirstIndex()
	last, _ := r.LastIndex()
	if first != 31 || last != 300 {
		t.Fatalf("after crash: log %d..%d, want 31..300", first, last)
	}
	var l raft.Log
	if err := r.GetLog(151, &l); err != nil || string(l.Data) != "entry 151" || l.Term != 1 {
		t.Fatalf("entry 151 after crash: %+v %v", l, err)
	}
	if term, err := r.GetUint64([]byte("CurrentTerm")); err != nil || term != 2 {
		t.Fatalf("term after crash: %d %v", term, err)
	}
	s.Close()
}
