package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mosaicimg/mosaic/api"
	"github.com/mosaicimg/mosaic/raftmeta"
	"github.com/mosaicimg/mosaic/replication"
)

// cluster runs `mosaic cluster status|leave|remove NODE` against a node's
// internal API.
func cluster(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: mosaic cluster status|leave|remove NODE [--addr HOST:PORT] [--json]")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("cluster " + sub)
	addr := fs.String("addr", "127.0.0.1:9292", "API address of the node to ask")
	secret := fs.String("cluster-secret", "", "cluster secret (prefer MOSAIC_CLUSTER_SECRET or --cluster-secret-file)")
	secretFile := fs.String("cluster-secret-file", "", "read the cluster secret from this file")
	asJSON := fs.Bool("json", false, "print the raw JSON status")
	// Allow `remove NODE --addr X` as well as flags first. The environment
	// is applied once, before the first part, so it never overrides a flag
	// given before NODE.
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var rest []string
	for fs.NArg() > 0 {
		rest = append(rest, fs.Arg(0))
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return err
		}
	}
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("cluster secret file: %w", err)
		}
		*secret = strings.TrimSpace(string(b))
	}
	if *secret == "" {
		return errors.New("the cluster secret is required (--cluster-secret-file, MOSAIC_CLUSTER_SECRET or --cluster-secret)")
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	call := func(method, path string, body any) ([]byte, error) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequestWithContext(ctx, method, "http://"+*addr+path, rd)
		if err != nil {
			return nil, err
		}
		req.Header.Set(api.ClusterSecretHeader, *secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
		}
		return b, nil
	}
	switch sub {
	case "status":
		b, err := call(http.MethodGet, "/internal/cluster/status", nil)
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := os.Stdout.Write(append(b, '\n'))
			return err
		}
		return printStatus(b)
	case "leave":
		_, err := call(http.MethodPost, "/internal/cluster/leave", nil)
		if err == nil {
			fmt.Println("left the cluster")
		}
		return err
	case "remove":
		if len(rest) != 1 {
			return errors.New("usage: mosaic cluster remove NODE")
		}
		_, err := call(http.MethodPost, "/internal/cluster/remove", map[string]string{"id": rest[0]})
		if err == nil {
			fmt.Println("removed", rest[0])
		}
		return err
	}
	return fmt.Errorf("unknown cluster command %q (status, leave, remove)", sub)
}

func printStatus(b []byte) error {
	var st struct {
		Meta  raftmeta.Status          `json:"meta"`
		Nodes []replication.NodeStatus `json:"nodes"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("decode status: %w", err)
	}
	m := st.Meta
	fmt.Printf("leader %s   term %d   commit %d   applied %d (on %s)   log %d..%d   snapshot %d\n\n",
		m.LeaderID, m.Term, m.CommitIndex, m.AppliedIndex, m.ID, m.FirstLogIndex, m.LastLogIndex, m.LastSnapshotIndex)
	suffrage := map[string]string{}
	for _, s := range m.Servers {
		suffrage[s.ID] = s.Suffrage
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tAPI\tROLE\tCHUNKS\tSTORED\tREPAIR\tOWNED\tCHECKED\tFETCHED\tMISSING\tTRIMMED\tLAST PASS")
	for _, n := range st.Nodes {
		role := strings.ToLower(suffrage[n.ID])
		if n.ID == m.LeaderID {
			role += " (leader)"
		}
		if n.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t%s\tunreachable: %s\n", n.ID, n.Addr, role, n.Error)
			continue
		}
		r := n.Repair
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%d\t%d (%s)\t%d\t%d\t%.1fs\n", n.ID, n.Addr, role,
			n.Store.Chunks, mib(n.Store.StoredBytes), r.State, r.ChunksOwned, r.ChunksChecked,
			r.ChunksFetched, mib(r.BytesFetched), r.Missing, r.Trimmed, r.Seconds)
	}
	return tw.Flush()
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
