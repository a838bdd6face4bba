package raftmeta

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/hashicorp/raft"
	"github.com/mosaicimg/mosaic/engine"
)

// Snapshot format: one JSON value per line. The first is the header
// {"format":"mosaic-meta","version":1,"applied":N}; then records
// {"t":"image","v":{...}} and {"t":"node","v":{...}} in a deterministic order; the last is {"t":"end","n":<records>}, so a
// truncated snapshot is detected.
type snapshotHeader struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	// Applied is the index of the last entry the snapshot reflects, so a
	// restored node knows how far its state goes (read-index waits on it).
	Applied uint64 `json:"applied,omitempty"`
}

type snapshotRecord struct {
	T string          `json:"t"`
	V json.RawMessage `json:"v,omitempty"`
	N int             `json:"n,omitempty"`
}

const snapshotFormat = "mosaic-meta"

type snapshot struct{ st *state }

// Persist implements raft.FSMSnapshot.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.st); err != nil {
		sink.Cancel()
		return fmt.Errorf("raftmeta: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release implements raft.FSMSnapshot.
func (s *snapshot) Release() {}

func writeSnapshot(w io.Writer, st *state) error {
	bw := bufio.NewWriterSize(w, 256<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(snapshotHeader{Format: snapshotFormat, Version: 1, Applied: st.applied}); err != nil {
		return err
	}
	n := 0
	ids := make([]string, 0, len(st.images))
	for id := range st.images {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		v, err := json.Marshal(st.images[id])
		if err != nil {
			return err
		}
		if err := enc.Encode(snapshotRecord{T: "image", V: v}); err != nil {
			return err
		}
		n++
	}
	for _, ni := range sortedNodes(st) {
		v, err := json.Marshal(ni)
		if err != nil {
			return err
		}
		if err := enc.Encode(snapshotRecord{T: "node", V: v}); err != nil {
			return err
		}
		n++
	}
	ns, err := writeSecretRecords(enc, st)
	if err != nil {
		return err
	}
	n += ns
	m, err := writeMemberRecords(enc, st)
	if err != nil {
		return err
	}
	n += m
	if m, err = writeTaskRecords(enc, st); err != nil {
		return err
	}
	n += m
	if m, err = writeLeaseRecords(enc, st); err != nil {
		return err
	}
	n += m
	if err := enc.Encode(snapshotRecord{T: "end", N: n}); err != nil {
		return err
	}
	return bw.Flush()
}

func readSnapshot(r io.Reader) (*state, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	var h snapshotHeader
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("raftmeta: restore: header: %w", err)
	}
	if h.Format != snapshotFormat || h.Version != 1 {
		return nil, fmt.Errorf("raftmeta: restore: unknown snapshot %q version %d", h.Format, h.Version)
	}
	st := newState()
	st.applied = h.Applied
	n := 0
	for {
		var rec snapshotRecord
		if err := dec.Decode(&rec); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("raftmeta: restore: snapshot truncated (no end record)")
			}
			return nil, fmt.Errorf("raftmeta: restore: %w", err)
		}
		switch rec.T {
		case "image":
			var img engine.Image
			if err := json.Unmarshal(rec.V, &img); err != nil {
				return nil, fmt.Errorf("raftmeta: restore image: %w", err)
			}
			st.images[img.ID] = &img
		case "node":
			var ni NodeInfo
			if err := json.Unmarshal(rec.V, &ni); err != nil {
				return nil, fmt.Errorf("raftmeta: restore node: %w", err)
			}
			st.nodes[ni.ID] = &ni
		case "secret":
			if err := readSecretRecord(st, rec.V); err != nil {
				return nil, err
			}
		case "member", "task":
			if err := restoreRecord(st, rec); err != nil {
				return nil, err
			}
		case "lease":
			if err := restoreLeaseRecord(st, rec.V); err != nil {
				return nil, err
			}
		case "end":
			if rec.N != n {
				return nil, fmt.Errorf("raftmeta: restore: %d records, end says %d", n, rec.N)
			}
			st.rebuildIndex()
			return st, nil
		default:
			return nil, fmt.Errorf("raftmeta: restore: unknown record type %q", rec.T)
		}
		n++
	}
}
