package raftmeta

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

func mustEncode(t *testing.T, ct CommandType, body any) []byte {
	t.Helper()
	b, err := encodeCommand(ct, 1, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestFSMApplySnapshotRestore(t *testing.T) {
	f := newFSM()
	ts := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	entries := [][]byte{
		mustEncode(t, CmdCreateImage, createImageV1{Image: &engine.Image{ID: "a", Status: engine.StatusQueued, CreatedAt: ts}}),
		mustEncode(t, CmdCreateImage, createImageV1{Image: &engine.Image{ID: "b", Status: engine.StatusQueued}}),
		mustEncode(t, CmdUpdateImage, updateImageV1{Image: &engine.Image{ID: "a", Status: engine.StatusActive, Tags: []string{"x"}}, IfRevision: 1}),
		mustEncode(t, CmdUpdateImage, updateImageV1{Image: &engine.Image{ID: "a"}, IfRevision: 1}), // stale: conflict
		mustEncode(t, CmdDeleteImage, deleteImageV1{ID: "b", IfRevision: 1}),
		mustEncode(t, CmdPutNode, putNodeV1{Node: NodeInfo{ID: "n1", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2", Voter: true, Since: ts}}),
		mustEncode(t, CmdPutNode, putNodeV1{Node: NodeInfo{ID: "n2", RaftAddr: "127.0.0.1:3", APIAddr: "127.0.0.1:4"}}),
		mustEncode(t, CmdRemoveNode, removeNodeV1{ID: "n2"}),
	}
	var results []*applyResult
	for i, e := range entries {
		results = append(results, f.Apply(&raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e}).(*applyResult))
	}
	if !errors.Is(results[3].Err, engine.ErrConflict) {
		t.Fatalf("stale update: %v, want conflict", results[3].Err)
	}
	if results[2].Image.Revision != 2 {
		t.Fatalf("update revision %d, want 2", results[2].Image.Revision)
	}
	if f.applied() != uint64(len(entries)) {
		t.Fatalf("applied %d", f.applied())
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, snap.(*snapshot).st); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(buf.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.st, g.st) {
		t.Fatalf("restored state differs:\n%+v\n%+v", f.st, g.st)
	}
	if len(g.st.nodes) != 1 || g.st.nodes["n1"].APIAddr != "127.0.0.1:2" || g.applied() != uint64(len(entries)) {
		t.Fatalf("restored registry %v applied %d", g.st.nodes, g.applied())
	}
	// A truncated snapshot is refused.
	if err := newFSM().Restore(io.NopCloser(bytes.NewReader(buf.Bytes()[:buf.Len()-5]))); err == nil {
		t.Fatal("truncated snapshot restored")
	}
	// Batch apply gives the same results as one by one.
	h := newFSM()
	var logs []*raft.Log
	for i, e := range entries {
		logs = append(logs, &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: e})
	}
	logs = append(logs, &raft.Log{Index: uint64(len(entries) + 1), Type: raft.LogConfiguration})
	out := h.ApplyBatch(logs)
	if len(out) != len(logs) || h.applied() != uint64(len(logs)) || !reflect.DeepEqual(h.st.images, f.st.images) {
		t.Fatalf("batch apply differs")
	}
}

func TestCheckCommandRefusesWhatWouldPanic(t *testing.T) {
	for _, bad := range [][]byte{nil, {1}, {79, 1, '{', '}'}, {1, 9, '{', '}'}, {1, 1, 'x'}} {
		if err := checkCommand(bad); !errors.Is(err, engine.ErrInvalid) {
			t.Errorf("checkCommand(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	ok := mustEncode(t, CmdPutNode, putNodeV1{Node: NodeInfo{ID: "n", RaftAddr: "a"}})
	if err := checkCommand(ok); err != nil {
		t.Fatal(err)
	}
	// Ignorable unknown types pass (older nodes skip them).
	if err := checkCommand([]byte{byte(IgnorableFlag | 90), 1, '{', '}'}); err != nil {
		t.Fatal(err)
	}
}

func TestResultWireRoundTrip(t *testing.T) {
	in := &applyResult{Err: engine.Errorf(engine.ErrExists, "Image ID x already exists!"), Image: &engine.Image{ID: "x", Revision: 3}}
	b, err := encodeResult(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := decodeResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(out.Err, engine.ErrExists) || out.Err.Error() != "Image ID x already exists!" || out.Image.Revision != 3 {
		t.Fatalf("round trip: %+v %v", out, out.Err)
	}
}
