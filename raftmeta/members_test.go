package raftmeta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/engine"
)

// openTestNode starts a single-voter node on loopback.
func openTestNode(t *testing.T) *Node {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	n, err := Open(Config{NodeID: "n1", Dir: t.TempDir(), RaftAddr: addr, Bootstrap: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMembersThroughRaft(t *testing.T) {
	n := openTestNode(t)
	ctx := context.Background()
	now := time.Unix(1700000000, 0).UTC()
	m := &engine.Member{ImageID: "img", MemberID: "p1", Status: engine.MemberPending, CreatedAt: now, UpdatedAt: now}
	if _, err := n.CreateMember(ctx, m, 2); err != nil {
		t.Fatal(err)
	}
	if _, err := n.CreateMember(ctx, m, 2); !errors.Is(err, engine.ErrExists) {
		t.Fatalf("duplicate member: %v", err)
	}
	m2 := *m
	m2.MemberID = "p2"
	if _, err := n.CreateMember(ctx, &m2, 2); err != nil {
		t.Fatal(err)
	}
	m3 := *m
	m3.MemberID = "p3"
	if _, err := n.CreateMember(ctx, &m3, 2); !errors.Is(err, engine.ErrTooLarge) {
		t.Fatalf("member over quota: %v", err)
	}
	up := *m
	up.Status = engine.MemberAccepted
	if _, err := n.UpdateMember(ctx, &up); err != nil {
		t.Fatal(err)
	}
	got, err := n.GetMember(ctx, "img", "p1")
	if err != nil || got.Status != engine.MemberAccepted {
		t.Fatalf("get member: %+v %v", got, err)
	}
	list, err := n.ListMembers(ctx, "img")
	if err != nil || len(list) != 2 || list[0].MemberID != "p1" || list[1].MemberID != "p2" {
		t.Fatalf("list members: %v %v", list, err)
	}
	of, err := n.MembershipsOf(ctx, "p2")
	if err != nil || len(of) != 1 || of["img"] == nil {
		t.Fatalf("memberships of p2: %v %v", of, err)
	}
	if err := n.DeleteMember(ctx, "img", "p1"); err != nil {
		t.Fatal(err)
	}
	if err := n.DeleteMember(ctx, "img", "p1"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("delete missing member: %v", err)
	}
	if _, err := n.UpdateMember(ctx, &up); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("update deleted member: %v", err)
	}
}

func TestTasksThroughRaft(t *testing.T) {
	n := openTestNode(t)
	ctx := context.Background()
	task := &engine.Task{ID: "t1", Type: engine.TaskTypeAPIImport, Status: engine.TaskPending, ImageID: "img",
		Input: []byte(`{"a":1}`), CreatedAt: time.Unix(1, 0).UTC()}
	if err := n.PutTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	task.Status = engine.TaskSuccess
	if err := n.PutTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	got, err := n.GetTask(ctx, "t1")
	if err != nil || got.Status != engine.TaskSuccess || string(got.Input) != `{"a":1}` {
		t.Fatalf("get task: %+v %v", got, err)
	}
	if _, err := n.GetTask(ctx, "nope"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("missing task: %v", err)
	}
	list, err := n.ListTasks(ctx, func(t *engine.Task) bool { return t.ImageID == "img" })
	if err != nil || len(list) != 1 {
		t.Fatalf("list tasks: %v %v", list, err)
	}
}

// TestSnapshotKeepsMembersAndTasks round-trips a state through the
// snapshot format and checks Apply never mutates what a snapshot shares.
func TestSnapshotKeepsMembersAndTasks(t *testing.T) {
	st := newState()
	apply := func(ct CommandType, body any) {
		b, err := encodeCommand(ct, 1, body)
		if err != nil {
			t.Fatal(err)
		}
		if res := applyCommand(st, b); res.Err != nil {
			t.Fatalf("%s: %v", ct, res.Err)
		}
	}
	now := time.Unix(5, 0).UTC()
	for i := range 3 {
		apply(CmdCreateMember, createMemberV1{Member: &engine.Member{ImageID: "img", MemberID: fmt.Sprintf("p%d", i),
			Status: engine.MemberPending, CreatedAt: now, UpdatedAt: now}})
	}
	apply(CmdPutTask, putTaskV1{Task: &engine.Task{ID: "t", Type: "import", Status: "pending", CreatedAt: now}})
	view := st.view()
	apply(CmdDeleteMember, deleteMemberV1{ImageID: "img", MemberID: "p0"})
	if len(view.members["img"]) != 3 {
		t.Fatalf("apply changed a snapshot's member map: %d members", len(view.members["img"]))
	}
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, view); err != nil {
		t.Fatal(err)
	}
	back, err := readSnapshot(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.members["img"]) != 3 || back.tasks["t"] == nil || back.members["img"]["p2"].Status != engine.MemberPending {
		t.Fatalf("restored state: %+v", back)
	}
	trunc := bytes.NewReader(buf.Bytes()[:0])
	if _, err := readSnapshot(trunc); err == nil {
		t.Fatal("empty snapshot accepted")
	}
}
