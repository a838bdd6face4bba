package raftmeta

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/mosaicimg/mosaic/engine"
)

// Node-to-node requests go to the internal HTTP API (package api serves
// them and calls back into the Node). They carry the cluster secret in
// SecretHeader. Paths:
//
//	POST /internal/raft/apply       body: an encoded command; reply: encoded result
//	GET  /internal/raft/read-index  reply: {"index": N}
//	POST /internal/cluster/join     body: NodeInfo as JSON
//	POST /internal/cluster/remove   body: {"id": ...}
//
// A reply of 421 (Misdirected Request) means "not the leader; nothing was
// done", so the sender may retry elsewhere. Errors carry
// {"error": kind, "message": text} (engine.ErrorKind).
const (
	// SecretHeader carries the cluster secret on internal requests.
	SecretHeader = "X-Mosaic-Cluster-Secret"

	pathApply     = "/internal/raft/apply"
	pathReadIndex = "/internal/raft/read-index"
	pathJoin      = "/internal/cluster/join"
	pathRemove    = "/internal/cluster/remove"
)

// peerClient sends internal requests to other nodes.
type peerClient struct {
	hc     *http.Client
	secret string
}

// errorBody is the JSON error of an internal endpoint.
type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	User    bool   `json:"user,omitempty"`
}

// do sends one request and returns the body of a 2xx reply. A 421 reply or
// a connection that was never made wraps errRetry.
func (c *peerClient) do(ctx context.Context, method, addr, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("raftmeta: %s %s: %w", method, path, err)
	}
	req.Header.Set(SecretHeader, c.secret)
	resp, err := c.hc.Do(req)
	if err != nil {
		if neverSent(err) {
			return nil, fmt.Errorf("raftmeta: %s %s%s: %w: %v", method, addr, path, errRetry, err)
		}
		return nil, fmt.Errorf("raftmeta: %s %s%s: %w: %v", method, addr, path, engine.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("raftmeta: %s %s%s: read reply: %w: %v", method, addr, path, engine.ErrUnavailable, err)
	}
	if resp.StatusCode/100 == 2 {
		return b, nil
	}
	var eb errorBody
	_ = json.Unmarshal(b, &eb)
	if eb.Error == "" {
		eb.Error, eb.Message = "internal", resp.Status+": "+string(b)
	}
	rerr := engine.KindError(eb.Error, eb.Message, eb.User)
	if resp.StatusCode == http.StatusMisdirectedRequest {
		return nil, fmt.Errorf("raftmeta: %s %s%s: %w: %w", method, addr, path, errRetry, rerr)
	}
	return nil, fmt.Errorf("raftmeta: %s %s%s: %w", method, addr, path, rerr)
}

// neverSent reports whether a request certainly did not reach the server.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial")
}

// leaderAPI returns the API address of the current leader, from the node
// registry. Unknown leaders wrap errRetry.
func (n *Node) leaderAPI() (string, error) {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return "", fmt.Errorf("raftmeta: %w: no leader known", errRetry)
	}
	var addr string
	n.fsm.read(func(st *state) {
		if ni, ok := st.nodes[string(id)]; ok {
			addr = ni.APIAddr
		}
	})
	if addr == "" {
		return "", fmt.Errorf("raftmeta: %w: leader %s has no API address in the registry yet", errRetry, id)
	}
	return addr, nil
}

// forwardApply sends an encoded command to the leader.
func (n *Node) forwardApply(ctx context.Context, t CommandType, cmd []byte) (*applyResult, error) {
	addr, err := n.leaderAPI()
	if err != nil {
		return nil, err
	}
	b, err := n.peers.do(ctx, http.MethodPost, addr, pathApply, cmd)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: forward %s: %w", t, err)
	}
	return decodeResult(b)
}

// forwardReadIndex asks the leader for a read index.
func (n *Node) forwardReadIndex(ctx context.Context) (uint64, error) {
	addr, err := n.leaderAPI()
	if err != nil {
		return 0, err
	}
	b, err := n.peers.do(ctx, http.MethodGet, addr, pathReadIndex, nil)
	if err != nil {
		return 0, err
	}
	var r struct {
		Index uint64 `json:"index"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("raftmeta: read index from %s: %w", addr, err)
	}
	return r.Index, nil
}

// wireResult is an applyResult on the wire.
type wireResult struct {
	Err    *errorBody      `json:"err,omitempty"`
	Result json.RawMessage `json:"result"`
}

func encodeResult(res *applyResult) ([]byte, error) {
	body, err := json.Marshal(res)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: encode result: %w", err)
	}
	w := wireResult{Result: body}
	if res.Err != nil {
		msg, user := engine.UserMessage(res.Err)
		if !user {
			msg = res.Err.Error()
		}
		w.Err = &errorBody{Error: engine.ErrorKind(res.Err), Message: msg, User: user}
	}
	return json.Marshal(w)
}

func decodeResult(b []byte) (*applyResult, error) {
	var w wireResult
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("raftmeta: decode forwarded result: %w", err)
	}
	res := &applyResult{}
	if err := json.Unmarshal(w.Result, res); err != nil {
		return nil, fmt.Errorf("raftmeta: decode forwarded result: %w", err)
	}
	if w.Err != nil {
		res.Err = engine.KindError(w.Err.Error, w.Err.Message, w.Err.User)
	}
	return res, nil
}

// checkCommand refuses an entry this node could not apply, before it is
// proposed: a forwarded entry that would panic every node's FSM must never
// reach the log. It applies the entry to a scratch state.
func checkCommand(cmd []byte) (err error) {
	if len(cmd) < 2 {
		return fmt.Errorf("raftmeta: command of %d bytes: %w", len(cmd), engine.ErrInvalid)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("raftmeta: refused command: %w: %v", engine.ErrInvalid, r)
		}
	}()
	applyCommand(newState(), cmd)
	return nil
}
