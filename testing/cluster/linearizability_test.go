package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/mosaicimg/mosaic/engine"
)

// The linearizability test: clients run create / update (name) / tag /
// delete / get against random nodes while the leader is killed twice and a
// follower is partitioned and healed. The history is checked with
// porcupine against a model of image records; then every key is read on
// every node, and those reads join the history, so an acknowledged write
// that was lost is a violation too.

type opKind int

const (
	opCreate opKind = iota
	opRename
	opTag
	opDelete
	opGet
)

func (k opKind) String() string {
	return [...]string{"create", "rename", "tag", "delete", "get"}[k]
}

type linInput struct {
	Kind opKind
	ID   string
	Arg  string
}

// linOutput: Result is "ok", "exists", "notfound", or for get the record
// as "name|tag,tag". Unknown marks an operation whose outcome the client
// never learned (timeout, 503): it may or may not have happened.
type linOutput struct {
	Result  string
	Unknown bool
}

// record is the model's state of one image.
type record struct {
	Exists, Deleted bool
	Name            string
	Tags            string // sorted, comma-separated
}

func (r record) view() string {
	if !r.Exists || r.Deleted {
		return "notfound"
	}
	return r.Name + "|" + r.Tags
}

var imageModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			id := op.Input.(linInput).ID
			if _, ok := by[id]; !ok {
				keys = append(keys, id)
			}
			by[id] = append(by[id], op)
		}
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, by[k])
		}
		return out
	},
	Init: func() any { return record{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(record), input.(linInput), output.(linOutput)
		live := s.Exists && !s.Deleted
		next, result := s, ""
		switch in.Kind {
		case opCreate:
			if s.Exists {
				result = "exists"
			} else {
				next, result = record{Exists: true, Name: in.Arg}, "ok"
			}
		case opRename:
			if live {
				next.Name, result = in.Arg, "ok"
			} else {
				result = "notfound"
			}
		case opTag:
			if live {
				tags := []string{}
				if s.Tags != "" {
					tags = strings.Split(s.Tags, ",")
				}
				if !slices.Contains(tags, in.Arg) {
					tags = append(tags, in.Arg)
					slices.Sort(tags)
				}
				next.Tags, result = strings.Join(tags, ","), "ok"
			} else {
				result = "notfound"
			}
		case opDelete:
			if live {
				next.Deleted, result = true, "ok"
			} else {
				result = "notfound"
			}
		case opGet:
			result = s.view()
		}
		if out.Unknown {
			return true, next
		}
		return out.Result == result, next
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(linInput), output.(linOutput)
		r := out.Result
		if out.Unknown {
			r = "?"
		}
		return fmt.Sprintf("%s(%s, %q) -> %s", in.Kind, in.ID[:8], in.Arg, r)
	},
}

// metaClient performs the test's operations on one node.
type metaClient interface {
	do(ctx context.Context, node int, in linInput) (string, error)
}

// serviceClient drives the nodes' engine services (in-process clusters).
type serviceClient struct{ c *inProcess }

func (sc serviceClient) do(ctx context.Context, node int, in linInput) (string, error) {
	svc := sc.c.Service(node)
	var err error
	switch in.Kind {
	case opCreate:
		name := in.Arg
		_, err = svc.Create(ctx, &engine.Image{ID: in.ID, Name: &name, DiskFormat: "raw", ContainerFormat: "bare"})
	case opRename:
		_, err = svc.Update(ctx, in.ID, func(img *engine.Image) error { n := in.Arg; img.Name = &n; return nil })
	case opTag:
		_, err = svc.Update(ctx, in.ID, func(img *engine.Image) error {
			if !slices.Contains(img.Tags, in.Arg) {
				img.Tags = append(img.Tags, in.Arg)
			}
			return nil
		})
	case opDelete:
		err = svc.Delete(ctx, in.ID)
	case opGet:
		img, gerr := svc.Get(ctx, in.ID)
		if gerr == nil {
			tags := slices.Clone(img.Tags)
			slices.Sort(tags)
			name := ""
			if img.Name != nil {
				name = *img.Name
			}
			return name + "|" + strings.Join(tags, ","), nil
		}
		err = gerr
	}
	switch {
	case err == nil:
		return "ok", nil
	case errors.Is(err, engine.ErrExists):
		return "exists", nil
	case errors.Is(err, engine.ErrNotFound):
		return "notfound", nil
	}
	return "", err
}

// httpClient drives the Glance API (JSON-patch updates, tag PUTs).
type httpClient struct{ c Cluster }

func (hc httpClient) do(ctx context.Context, node int, in linInput) (string, error) {
	base := hc.c.URL(node) + "/v2/images/"
	var st int
	var b []byte
	var err error
	switch in.Kind {
	case opCreate:
		st, b, err = Do(ctx, "POST", hc.c.URL(node)+"/v2/images", "application/json", bytes.NewReader(
			fmt.Appendf(nil, `{"id":%q,"name":%q,"disk_format":"raw","container_format":"bare"}`, in.ID, in.Arg)))
	case opRename:
		st, b, err = Do(ctx, "PATCH", base+in.ID, "application/openstack-images-v2.1-json-patch",
			strings.NewReader(fmt.Sprintf(`[{"op":"replace","path":"/name","value":%q}]`, in.Arg)))
	case opTag:
		st, b, err = Do(ctx, "PUT", base+in.ID+"/tags/"+in.Arg, "", nil)
	case opDelete:
		st, b, err = Do(ctx, "DELETE", base+in.ID, "", nil)
	case opGet:
		st, b, err = Do(ctx, "GET", base+in.ID, "", nil)
		if err == nil && st == http.StatusOK {
			var img struct {
				Name string
				Tags []string
			}
			if err := json.Unmarshal(b, &img); err != nil {
				return "", err
			}
			slices.Sort(img.Tags)
			return img.Name + "|" + strings.Join(img.Tags, ","), nil
		}
	}
	switch {
	case err != nil:
		return "", err
	case st/100 == 2:
		return "ok", nil
	case st == http.StatusConflict && in.Kind == opCreate:
		return "exists", nil
	case st == http.StatusNotFound:
		return "notfound", nil
	case st == http.StatusMethodNotAllowed:
		return "", fmt.Errorf("%s: %w: the API answers 405 (not implemented)", in.Kind, errUnsupportedOp)
	}
	return "", fmt.Errorf("%s: HTTP %d %s", in.Kind, st, b)
}

var errUnsupportedOp = errors.New("unsupported operation")

func TestLinearizableUnderFaults(t *testing.T) {
	ops := 300
	if soak() {
		ops = 1000
	}
	t.Run("inprocess", func(t *testing.T) {
		c := StartInProcess(t, 3, Options{}).(*inProcess)
		runLinearizability(t, c, serviceClient{c}, ops)
	})
	// Through the Glance API (JSON-patch updates, tag PUTs) on real
	// processes: in make test with fewer operations, 1000 in make soak.
	t.Run("processes", func(t *testing.T) {
		c := StartProcesses(t, 3, Options{})
		runLinearizability(t, c, httpClient{c}, ops)
	})
}

func runLinearizability(t *testing.T, c Cluster, cl metaClient, total int) {
	WaitConverged(t, c, 3)
	keys := make([]string, 24)
	for i := range keys {
		keys[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", rand.Uint32(), i)
	}
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		issued  atomic.Int64
		unknown atomic.Int64
		fatal   atomic.Value
	)
	var wg sync.WaitGroup
	for client := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(client), 7))
			for issued.Add(1) <= int64(total) {
				in := linInput{ID: keys[r.IntN(len(keys))]}
				switch p := r.IntN(100); {
				case p < 20:
					in.Kind, in.Arg = opCreate, fmt.Sprintf("n%d", r.IntN(1000))
				case p < 40:
					in.Kind, in.Arg = opRename, fmt.Sprintf("n%d", r.IntN(1000))
				case p < 55:
					in.Kind, in.Arg = opTag, fmt.Sprintf("t%d", r.IntN(4))
				case p < 65:
					in.Kind = opDelete
				default:
					in.Kind = opGet
				}
				node := r.IntN(3)
				for !c.Running(node) {
					node = (node + 1) % 3
				}
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
				call := now()
				res, err := cl.do(ctx, node, in)
				ret := now()
				cancel()
				out := linOutput{Result: res}
				if err != nil {
					if errors.Is(err, errUnsupportedOp) {
						fatal.Store(err)
						return
					}
					if in.Kind == opGet {
						continue // a failed read has no effect
					}
					out.Unknown = true
					ret = 1 << 62 // may take effect at any time after its call
					unknown.Add(1)
				}
				mu.Lock()
				history = append(history, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}
	// Faults, paced by progress: kill the leader twice, partition a
	// follower and heal it.
	at := func(frac float64) {
		Poll(t, 5*time.Minute, fmt.Sprintf("%.0f%% of the operations", frac*100), func() error {
			if n := issued.Load(); n < int64(frac*float64(total)) {
				if fatal.Load() != nil {
					return nil
				}
				return fmt.Errorf("%d issued", n)
			}
			return nil
		})
	}
	at(0.1)
	l := Leader(t, c)
	c.Kill(l)
	t.Logf("killed leader node %d", l)
	at(0.25)
	c.Restart(l)
	at(0.4)
	f := (Leader(t, c) + 1) % 3
	c.Partition(f)
	t.Logf("partitioned follower node %d", f)
	at(0.55)
	c.Heal()
	at(0.7)
	l = Leader(t, c)
	c.Kill(l)
	t.Logf("killed leader node %d", l)
	at(0.85)
	c.Restart(l)
	wg.Wait()
	if err, ok := fatal.Load().(error); ok {
		t.Fatalf("the cluster cannot run this test: %v", err)
	}
	WaitConverged(t, c, 3)
	// Final reads on every node: an acknowledged write that was lost shows
	// up as a violation.
	for node := range 3 {
		for _, k := range keys {
			in := linInput{Kind: opGet, ID: k}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			call := now()
			res, err := cl.do(ctx, node, in)
			ret := now()
			cancel()
			if err != nil {
				t.Fatalf("final read of %s on node %d: %v", k, node, err)
			}
			history = append(history, porcupine.Operation{ClientId: 4 + node, Input: in, Call: call, Output: linOutput{Result: res}, Return: ret})
		}
	}
	outcomes := map[string]int{}
	for _, op := range history {
		r := op.Output.(linOutput).Result
		if op.Output.(linOutput).Unknown {
			r = "unknown"
		} else if strings.Contains(r, "|") {
			r = "found"
		}
		outcomes[op.Input.(linInput).Kind.String()+":"+r]++
	}
	t.Logf("outcomes: %v", outcomes)
	res, info := porcupine.CheckOperationsVerbose(imageModel, history, 2*time.Minute)
	t.Logf("%d operations (%d with unknown outcome) checked: %s", len(history), unknown.Load(), res)
	if res != porcupine.Ok {
		var buf bytes.Buffer
		if err := porcupine.Visualize(imageModel, info, &buf); err == nil {
			path := t.TempDir() + "/history.html"
			_ = writeFile(path, buf.Bytes())
			t.Logf("visualization: %s", path)
		}
		t.Fatalf("history is not linearizable (%s)", res)
	}
}

// TestModelCatchesViolations proves the checker would flag a lost write
// and a stale read.
func TestModelCatchesViolations(t *testing.T) {
	id := "00000000-0000-4000-8000-000000000001"
	op := func(client int, k opKind, arg, res string, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: linInput{Kind: k, ID: id, Arg: arg}, Output: linOutput{Result: res}, Call: call, Return: ret}
	}
	good := []porcupine.Operation{op(0, opCreate, "a", "ok", 0, 10), op(1, opGet, "", "a|", 5, 15), op(0, opTag, "x", "ok", 20, 30), op(1, opGet, "", "a|x", 31, 40)}
	if porcupine.CheckOperations(imageModel, good) != true {
		t.Fatal("a linearizable history was refused")
	}
	lost := []porcupine.Operation{op(0, opCreate, "a", "ok", 0, 10), op(0, opRename, "b", "ok", 11, 20), op(1, opGet, "", "a|", 21, 30)}
	stale := []porcupine.Operation{op(0, opCreate, "a", "ok", 0, 10), op(1, opGet, "", "notfound", 11, 20)}
	for name, h := range map[string][]porcupine.Operation{"lost write": lost, "stale read": stale} {
		if porcupine.CheckOperations(imageModel, h) {
			t.Errorf("%s accepted", name)
		}
	}
}
