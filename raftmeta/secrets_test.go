package raftmeta

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

func secretCmd(t *testing.T, ct CommandType, body any) []byte {
	t.Helper()
	b, err := encodeCommand(ct, 1, body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testSecret(id string) *engine.Secret {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &engine.Secret{ID: id, ProjectID: "p1", Name: "cert " + id, SecretType: engine.SecretTypeCertificate,
		ContentType: "application/octet-stream", Payload: []byte("payload of " + id), CreatedAt: at, UpdatedAt: at}
}

func TestApplySecretCommands(t *testing.T) {
	st := newState()
	if res := applyCommand(st, secretCmd(t, CmdCreateSecret, createSecretV1{Secret: testSecret("a")})); res.Err != nil {
		t.Fatalf("create: %v", res.Err)
	}
	if res := applyCommand(st, secretCmd(t, CmdCreateSecret, createSecretV1{Secret: testSecret("a")})); !errors.Is(res.Err, engine.ErrExists) {
		t.Fatalf("create twice: %v, want ErrExists", res.Err)
	}
	if res := applyCommand(st, secretCmd(t, CmdCreateSecret, createSecretV1{Secret: &engine.Secret{}})); !errors.Is(res.Err, engine.ErrInvalid) {
		t.Fatalf("create without ID: %v, want ErrInvalid", res.Err)
	}
	if got := st.secrets["a"]; got == nil || !bytes.Equal(got.Payload, []byte("payload of a")) || got.ProjectID != "p1" {
		t.Fatalf("stored secret: %+v", got)
	}
	if res := applyCommand(st, secretCmd(t, CmdDeleteSecret, deleteSecretV1{ID: "a"})); res.Err != nil {
		t.Fatalf("delete: %v", res.Err)
	}
	if res := applyCommand(st, secretCmd(t, CmdDeleteSecret, deleteSecretV1{ID: "a"})); !errors.Is(res.Err, engine.ErrNotFound) {
		t.Fatalf("delete twice: %v, want ErrNotFound", res.Err)
	}
	if CmdCreateSecret.String() != "create-secret" || CmdDeleteSecret.String() != "delete-secret" {
		t.Fatalf("command names: %s, %s", CmdCreateSecret, CmdDeleteSecret)
	}
	for _, c := range []CommandType{CmdCreateSecret, CmdDeleteSecret} {
		if c < 48 || c > 63 {
			t.Fatalf("%s = %d is outside the key-manager range 48–63", c, c)
		}
	}
}

func TestSnapshotKeepsSecrets(t *testing.T) {
	st := newState()
	for i := range 3 {
		applyCommand(st, secretCmd(t, CmdCreateSecret, createSecretV1{Secret: testSecret(fmt.Sprint("s", i))}))
	}
	applyCommand(st, secretCmd(t, CmdCreateImage, createImageV1{Image: &engine.Image{ID: "img", Status: engine.StatusQueued}}))
	var buf bytes.Buffer
	if err := writeSnapshot(&buf, st.view()); err != nil {
		t.Fatal(err)
	}
	got, err := readSnapshot(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	if len(got.secrets) != 3 || len(got.images) != 1 {
		t.Fatalf("restored %d secrets and %d images, want 3 and 1", len(got.secrets), len(got.images))
	}
	for id, s := range st.secrets {
		r := got.secrets[id]
		if r == nil || !bytes.Equal(r.Payload, s.Payload) || r.Name != s.Name || !r.CreatedAt.Equal(s.CreatedAt) {
			t.Fatalf("secret %s restored as %+v, want %+v", id, r, s)
		}
	}
	// A truncated snapshot (secrets but no end record) is refused.
	cut := buf.Bytes()[:bytes.LastIndex(buf.Bytes(), []byte(`{"t":"end"`))]
	if _, err := readSnapshot(bytes.NewReader(cut)); err == nil {
		t.Fatal("a snapshot without its end record was restored")
	}
}

// TestNodeSecretStore drives the secret store through a real single-node
// Raft cluster, then restarts the node and finds the secrets again.
func TestNodeSecretStore(t *testing.T) {
	dir := t.TempDir()
	open := func() *Node {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		n, err := Open(Config{NodeID: "n1", Dir: dir, RaftAddr: addr, Bootstrap: true})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		if err := n.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := open()
	ctx := t.Context()
	for _, id := range []string{"b", "a", "c"} {
		if _, err := n.CreateSecret(ctx, testSecret(id)); err != nil {
			t.Fatalf("create %s: %v", id, err)
		}
	}
	if _, err := n.CreateSecret(ctx, testSecret("a")); !errors.Is(err, engine.ErrExists) {
		t.Fatalf("create a twice: %v", err)
	}
	if err := n.DeleteSecret(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := n.DeleteSecret(ctx, "b"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("delete b twice: %v", err)
	}
	// Restart: the secrets come back from the log (and a snapshot).
	if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		t.Fatalf("snapshot: %v", err)
	}
	if _, err := n.CreateSecret(ctx, testSecret("d")); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	n = open()
	defer n.Close()
	list, err := n.ListSecrets(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, s := range list {
		ids = append(ids, s.ID)
	}
	if fmt.Sprint(ids) != "[a c d]" {
		t.Fatalf("after restart: secrets %v, want [a c d]", ids)
	}
	s, err := n.GetSecret(ctx, "c")
	if err != nil || !bytes.Equal(s.Payload, []byte("payload of c")) {
		t.Fatalf("get c: %+v, %v", s, err)
	}
	s.Payload[0] = 'X' // a copy: the store must not change
	if again, _ := n.GetSecret(ctx, "c"); again.Payload[0] != 'p' {
		t.Fatal("GetSecret returned the stored value, not a copy")
	}
	if _, err := n.GetSecret(ctx, "b"); !errors.Is(err, engine.ErrNotFound) {
		t.Fatalf("get deleted b: %v", err)
	}
}
