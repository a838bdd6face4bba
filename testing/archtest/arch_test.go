package archtest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/mosaicimg/mosaic/testing/harness"
)

const mod = "github.com/mosaicimg/mosaic"

type pkg struct {
	ImportPath string
	Imports    []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = harness.RepoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []pkg
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// allowedOurs lists, for each inner package, exactly which of our packages
// it may import. Packages not listed (cmd/..., testing/...) are the wiring
// and test layers and may import any of ours.
var allowedOurs = map[string][]string{
	"chunker":            {},
	"engine":             {"chunker"},
	"engine/pebblestore": {"engine", "chunker"},
	"raftmeta":           {"engine", "chunker"},
	"fusefs":             {"engine", "chunker"},
	"api":                {"engine", "chunker", "api/auth"},
	"api/auth":           {"engine"},
	// replication places and moves chunks between nodes; it sees the
	// metadata only through interfaces it declares (cmd adapts raftmeta).
	"replication": {"engine", "chunker"},
}

// confined lists third-party module prefixes and the packages (and their
// subpackages) allowed to import them.
var confined = map[string][]string{
	"github.com/cockroachdb/pebble":     {"engine/pebblestore", "raftmeta", "testing"},
	"github.com/hashicorp/raft":         {"raftmeta", "testing"},
	"github.com/hashicorp/go-hclog":     {"raftmeta"},
	"github.com/hanwen/go-fuse":         {"fusefs", "testing"},
	"github.com/anishathalye/porcupine": {"testing"},
}

func rel(path string) string { return strings.TrimPrefix(path, mod+"/") }

func under(p, prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }

// violations returns every broken rule in pkgs.
func violations(pkgs []pkg) []string {
	var out []string
	for _, p := range pkgs {
		me := rel(p.ImportPath)
		allowed, ruled := allowedOurs[me]
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, mod+"/") {
				dep := rel(imp)
				if !under(me, "testing") && under(dep, "testing") {
					out = append(out, fmt.Sprintf("%s imports %s: production code must not import testing/", me, dep))
				}
				if ruled && !slices.Contains(allowed, dep) {
					out = append(out, fmt.Sprintf("%s imports %s: it may import only %v of ours", me, dep, allowed))
				}
				continue
			}
			for prefix, who := range confined {
				if !strings.HasPrefix(imp, prefix) {
					continue
				}
				if !slices.ContainsFunc(who, func(a string) bool { return under(me, a) }) {
					out = append(out, fmt.Sprintf("%s imports %s: only %v may", me, imp, who))
				}
			}
		}
	}
	return out
}

func TestDependenciesPointInward(t *testing.T) {
	pkgs := listPackages(t)
	seen := 0
	for _, p := range pkgs {
		if _, ok := allowedOurs[rel(p.ImportPath)]; ok {
			seen++
		}
	}
	if seen != len(allowedOurs) {
		t.Fatalf("go list found %d of the %d ruled packages", seen, len(allowedOurs))
	}
	for _, v := range violations(pkgs) {
		t.Error(v)
	}
}

// TestCheckerCatchesViolations proves the checker fails on broken rules.
func TestCheckerCatchesViolations(t *testing.T) {
	bad := []pkg{
		{ImportPath: mod + "/api", Imports: []string{mod + "/raftmeta"}},
		{ImportPath: mod + "/chunker", Imports: []string{mod + "/engine"}},
		{ImportPath: mod + "/engine", Imports: []string{mod + "/engine/pebblestore"}},
		{ImportPath: mod + "/fusefs", Imports: []string{"github.com/cockroachdb/pebble/v2"}},
		{ImportPath: mod + "/cmd/mosaic", Imports: []string{mod + "/testing/harness"}},
		{ImportPath: mod + "/replication", Imports: []string{mod + "/raftmeta"}},
		{ImportPath: mod + "/raftmeta", Imports: []string{mod + "/api"}},
	}
	if got := violations(bad); len(got) != len(bad) {
		t.Fatalf("checker found %d violations, want %d: %q", len(got), len(bad), got)
	}
	good := []pkg{{ImportPath: mod + "/api", Imports: []string{mod + "/engine", "net/http"}}}
	if got := violations(good); len(got) != 0 {
		t.Fatalf("checker flagged a legal import: %q", got)
	}
}
