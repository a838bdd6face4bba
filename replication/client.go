package replication

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"github.com/mosaicimg/mosaic/engine"
)

// secretHeader carries the cluster secret (api.ClusterSecretHeader).
const secretHeader = "X-Mosaic-Cluster-Secret"

// client sends chunk requests to other nodes.
type client struct {
	hc     *http.Client
	secret string
}

func (c *client) do(ctx context.Context, method, addr, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set(secretHeader, c.secret)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s%s: %w: %v", method, addr, path, engine.ErrUnavailable, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		var eb struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &eb) != nil || eb.Error == "" {
			eb.Error, eb.Message = "internal", resp.Status+": "+string(b)
		}
		return nil, fmt.Errorf("%s %s%s: %w", method, addr, path, engine.KindError(eb.Error, eb.Message, false))
	}
	return resp, nil
}

// get fetches a chunk's bytes (unverified: the caller verifies).
func (c *client) get(ctx context.Context, addr string, id engine.ChunkID, buf []byte) ([]byte, error) {
	resp, err := c.do(ctx, http.MethodGet, addr, pathChunk+id.String(), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b := bytes.NewBuffer(buf[:0])
	if _, err := io.Copy(b, io.LimitReader(resp.Body, maxChunk+1)); err != nil {
		return nil, fmt.Errorf("get chunk %s from %s: %w: %v", id, addr, engine.ErrUnavailable, err)
	}
	return b.Bytes(), nil
}

// getBatch fetches the listed chunks the node has, verified against their
// IDs; chunks it lacks are absent from the result.
func (c *client) getBatch(ctx context.Context, addr string, ids []engine.ChunkID) (map[engine.ChunkID][]byte, error) {
	body := make([]byte, 0, 32*len(ids))
	for _, id := range ids {
		body = append(body, id[:]...)
	}
	resp, err := c.do(ctx, http.MethodPost, addr, pathGet, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := make(map[engine.ChunkID][]byte, len(ids))
	err = readFrames(resp.Body, func(id engine.ChunkID, data []byte) error {
		if got := engine.SumChunk(data); got != id {
			return fmt.Errorf("chunk from %s: %w", addr, &engine.CorruptError{ID: id, Got: got})
		}
		out[id] = append([]byte(nil), data...)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("get chunks from %s: %w", addr, err)
	}
	return out, nil
}

// claim asks which of ids the node has, protecting them from its GC.
func (c *client) claim(ctx context.Context, addr string, ids []engine.ChunkID) ([]bool, error) {
	body := make([]byte, 0, 32*len(ids))
	for _, id := range ids {
		body = append(body, id[:]...)
	}
	resp, err := c.do(ctx, http.MethodPost, addr, pathClaim, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(len(ids))+1))
	if err != nil || len(b) != len(ids) {
		return nil, fmt.Errorf("claim on %s: %w: %d of %d answers (%v)", addr, engine.ErrUnavailable, len(b), len(ids), err)
	}
	out := make([]bool, len(ids))
	for i, v := range b {
		out[i] = v == 1
	}
	return out, nil
}

// put sends encoded frames; the node stores them (not yet durably).
func (c *client) put(ctx context.Context, addr string, frames []byte, n int) error {
	resp, err := c.do(ctx, http.MethodPost, addr, pathPut, bytes.NewReader(frames))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var got [4]byte
	if _, err := io.ReadFull(resp.Body, got[:]); err != nil || int(binary.BigEndian.Uint32(got[:])) != n {
		return fmt.Errorf("put on %s: %w: stored %d of %d (%v)", addr, engine.ErrUnavailable, binary.BigEndian.Uint32(got[:]), n, err)
	}
	return nil
}

// sync makes everything the node received durable.
func (c *client) sync(ctx context.Context, addr string) error {
	resp, err := c.do(ctx, http.MethodPost, addr, pathSync, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// status fetches a node's status report.
func (c *client) status(ctx context.Context, addr string) (*NodeStatus, error) {
	resp, err := c.do(ctx, http.MethodGet, addr, pathStatus, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s NodeStatus
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("status of %s: %w", addr, err)
	}
	return &s, nil
}
