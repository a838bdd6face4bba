package compat

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mosaicimg/mosaic/testing/harness"
)

// sharedDir returns $MOSAIC_SHARED, or the copy of the shared Glance
// reference material kept in testdata/ (see testdata/README.md).
func sharedDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("MOSAIC_SHARED"); d != "" {
		return d
	}
	d, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(d, "glance", "real-glance", "edge-cases.sh")); err != nil {
		t.Fatalf("the Glance edge-case script is missing from testdata: %v", err)
	}
	return d
}

// edgeResult is one row of edge-cases.sh's results.tsv.
type edgeResult struct {
	n      int
	name   string
	status string
	body   string
}

func readTSV(t *testing.T, path string) map[int]edgeResult {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]edgeResult{}
	for i, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if i == 0 {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) < 6 {
			t.Fatalf("%s line %d: %d fields", path, i+1, len(f))
		}
		n, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("%s line %d: %v", path, i+1, err)
		}
		out[n] = edgeResult{n: n, name: f[1], status: f[3], body: f[5]}
	}
	return out
}

// knownDifference is a row of a docs/compat.md edge-case table:
// | n | case | Glance | Mosaic | reason |
type knownDifference struct {
	name, glance, mosaic string
}

// readKnown reads the table under the heading "## "+section.
func readKnown(t *testing.T, section string) map[int]knownDifference {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(harness.RepoRoot(t), "docs", "compat.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]knownDifference{}
	in, found := false, false
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			in = strings.TrimSpace(h) == section
			found = found || in
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 5 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(cells[0]))
		if err != nil {
			continue // header or separator
		}
		if strings.TrimSpace(cells[4]) == "" {
			t.Fatalf("docs/compat.md: difference %d has no reason", n)
		}
		out[n] = knownDifference{name: strings.TrimSpace(cells[1]), glance: strings.TrimSpace(cells[2]), mosaic: strings.TrimSpace(cells[3])}
	}
	if !found {
		t.Fatalf("docs/compat.md has no section %q", section)
	}
	return out
}

// edgeRun is one way of running the edge-case script: an auth mode, the
// token sent, the real Glance's answers to compare with, and the
// docs/compat.md section listing the known differences.
type edgeRun struct {
	name, token, expected, section string
	extra                          []string
}

// tokenFileLines gives Mosaic's token mode the identities the real Glance
// was run with (start.sh --token-auth): project "demo" with the member
// and reader roles, and an admin.
const tokenFileLines = "demo demo-user demo member,reader\nadmin admin-user admin admin,member,reader\n"

// TestEdgeCasesMatchGlance replays the edge cases against Mosaic as the
// real Glance was: unauthenticated, and with token auth as a project
// member and as an admin.
func TestEdgeCasesMatchGlance(t *testing.T) {
	harness.RequireTool(t, "curl", "curl")
	harness.RequireTool(t, "python3", "python3")
	shared := sharedDir(t)
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(tokenFileLines), 0o600); err != nil {
		t.Fatal(err)
	}
	tokenAuth := []string{"--auth", "token", "--token-file", tokens}
	for _, run := range []edgeRun{
		{"noauth", "x", "edge-noauth.tsv", "Edge-case status differences", nil},
		{"token-member", "demo", "edge-tokenauth-member.tsv", "Edge-case status differences: token auth, member", tokenAuth},
		{"token-admin", "admin", "edge-tokenauth-admin.tsv", "Edge-case status differences: token auth, admin", tokenAuth},
	} {
		t.Run(run.name, func(t *testing.T) {
			t.Parallel()
			edgeCases(t, shared, run)
		})
	}
}

func edgeCases(t *testing.T, shared string, run edgeRun) {
	node := harness.StartNode(t, harness.NodeOptions{Extra: run.extra})
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	harness.Run(t, ctx, nil, "bash", filepath.Join(shared, "glance", "real-glance", "edge-cases.sh"), node.URL(), run.token, out)
	got := readTSV(t, filepath.Join(out, "results.tsv"))
	want := readTSV(t, filepath.Join(shared, "glance", "expected", run.expected))
	known := readKnown(t, run.section)

	matched := 0
	for n := 1; n <= len(want); n++ {
		w, ok := want[n]
		if !ok {
			t.Fatalf("expected table lacks case %d", n)
		}
		g, ok := got[n]
		if !ok {
			t.Errorf("case %d (%s): Mosaic's run has no result", n, w.name)
			continue
		}
		if g.name != w.name {
			t.Fatalf("case %d: script case %q, expected table %q: the script and the table disagree", n, g.name, w.name)
		}
		k, listed := known[n]
		if g.status == w.status {
			matched++
			if listed {
				t.Errorf("case %d (%s) now matches Glance (%s) but docs/compat.md still lists it as a difference", n, w.name, w.status)
			}
			continue
		}
		switch {
		case !listed:
			t.Errorf("case %d (%s): Glance %s, Mosaic %s (%s): fix it or list it in docs/compat.md (%s)", n, w.name, w.status, g.status, g.body, run.section)
		case k.glance != w.status || k.mosaic != g.status:
			t.Errorf("case %d (%s): Glance %s, Mosaic %s, but docs/compat.md says %s/%s", n, w.name, w.status, g.status, k.glance, k.mosaic)
		}
	}
	for n := range known {
		if _, ok := want[n]; !ok {
			t.Errorf("docs/compat.md lists case %d, which the edge-case table does not have", n)
		}
	}
	summary := fmt.Sprintf("compat (%s): %d of %d edge-case status codes match Glance 25.1 (%d listed differences) in %v",
		run.name, matched, len(want), len(want)-matched, time.Since(start).Round(time.Second))
	t.Log(summary)
	fmt.Fprintln(os.Stderr, summary)
}
