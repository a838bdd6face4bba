package tenancy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/testing/cluster"
)

// TestClusterInTokenMode: nodes talk to each other with the cluster
// secret only. A two-node cluster in token mode forwards writes to the
// leader and replicates chunks without any user token; the internal
// endpoints answer the secret and nothing else (a user's token, even an
// admin's, opens none of them), and the secret is no user identity on the
// Glance API.
func TestClusterInTokenMode(t *testing.T) {
	t.Parallel()
	memberA, memberB, admin := "tok-a-"+randomHex(16), "tok-b-"+randomHex(16), "tok-adm-"+randomHex(16)
	file := filepath.Join(t.TempDir(), "tokens")
	lines := fmt.Sprintf("%s user-a proj-a member,reader\n%s user-b proj-b member,reader\n%s root admin admin,member,reader\n", memberA, memberB, admin)
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	c := cluster.StartProcesses(t, 2, cluster.Options{Replicas: 2, Direct: true,
		ExtraArgs: []string{"--auth", "token", "--token-file", file}})
	cluster.WaitConverged(t, c, 2)
	ctx := context.Background()
	do := func(node int, method, path, body, ctype string, hdr ...string) (int, string) {
		t.Helper()
		var rd *bytes.Reader
		if body != "" {
			rd = bytes.NewReader([]byte(body))
		} else {
			rd = bytes.NewReader(nil)
		}
		st, b, err := cluster.Do(ctx, method, c.URL(node)+path, ctype, rd, hdr...)
		if err != nil {
			t.Fatal(err)
		}
		return st, string(b)
	}
	leader := cluster.Leader(t, c)
	follower := 1 - leader

	// A write on the follower is forwarded to the leader as a command, not
	// as the user's request; the data replicates to both nodes.
	st, body := do(follower, "POST", "/v2/images", `{"name":"clustered","disk_format":"raw","container_format":"bare","visibility":"private"}`,
		"application/json", "X-Auth-Token", memberA)
	if st != 201 {
		t.Fatalf("create on the follower: %d %s", st, body)
	}
	var img struct{ ID, Owner string }
	if err := json.Unmarshal([]byte(body), &img); err != nil || img.Owner != "proj-a" {
		t.Fatalf("created %s (%v)", body, err)
	}
	data := strings.Repeat("cluster-token-mode ", 50000)
	if st, body := do(follower, "PUT", "/v2/images/"+img.ID+"/file", data, "application/octet-stream", "X-Auth-Token", memberA); st != 204 {
		t.Fatalf("upload on the follower: %d %s", st, body)
	}
	cluster.WaitConverged(t, c, 2)
	if st, got := do(leader, "GET", "/v2/images/"+img.ID+"/file", "", "", "X-Auth-Token", memberA); st != 200 || got != data {
		t.Fatalf("download on the leader: %d, %d bytes", st, len(got))
	}
	for _, node := range []int{leader, follower} {
		if st, body := do(node, "GET", "/v2/images/"+img.ID, "", "", "X-Auth-Token", memberB); st != 404 || strings.Contains(body, "clustered") {
			t.Fatalf("node %d shows A's private image to B: %d %s", node, st, body)
		}
	}

	// The internal endpoints: the secret, and only the secret.
	secret := []string{"X-Mosaic-Cluster-Secret", c.Secret()}
	if st, body := do(leader, "GET", "/internal/node/status", "", "", secret...); st != 200 {
		t.Fatalf("internal status with the secret and no user token: %d %s", st, body)
	}
	for name, hdr := range map[string][]string{
		"an admin's token":                  {"X-Auth-Token", admin},
		"an admin's token and a bad secret": {"X-Auth-Token", admin, "X-Mosaic-Cluster-Secret", "wrong-secret-0123456789"},
		"nothing":                           nil,
	} {
		for _, path := range []string{"/internal/node/status", "/internal/cluster/status"} {
			if st, body := do(follower, "GET", path, "", "", hdr...); st != 403 {
				t.Fatalf("GET %s with %s: %d %s, want 403", path, name, st, body)
			}
		}
		if st, body := do(follower, "POST", "/internal/raft/apply", "x", "application/octet-stream", hdr...); st != 403 {
			t.Fatalf("raft apply with %s: %d %s, want 403", name, st, body)
		}
	}
	if st, body := do(leader, "GET", "/v2/images", "", "", secret...); st != 401 {
		t.Fatalf("Glance API with the cluster secret and no token: %d %s, want 401", st, body)
	}
}
