package raftmeta

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/mosaicimg/mosaic/engine"
)

// writeMemberRecords writes one "member" record per membership, in image
// then member ID order, and returns how many it wrote.
func writeMemberRecords(enc *json.Encoder, st *state) (int, error) {
	n := 0
	for _, imageID := range slices.Sorted(maps.Keys(st.members)) {
		ms := st.members[imageID]
		for _, memberID := range slices.Sorted(maps.Keys(ms)) {
			v, err := json.Marshal(ms[memberID])
			if err != nil {
				return n, err
			}
			if err := enc.Encode(snapshotRecord{T: "member", V: v}); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// writeTaskRecords writes one "task" record per task, in ID order.
func writeTaskRecords(enc *json.Encoder, st *state) (int, error) {
	n := 0
	for _, id := range slices.Sorted(maps.Keys(st.tasks)) {
		v, err := json.Marshal(st.tasks[id])
		if err != nil {
			return n, err
		}
		if err := enc.Encode(snapshotRecord{T: "task", V: v}); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// restoreRecord loads a member or task record into st.
func restoreRecord(st *state, rec snapshotRecord) error {
	switch rec.T {
	case "member":
		var m engine.Member
		if err := json.Unmarshal(rec.V, &m); err != nil {
			return fmt.Errorf("raftmeta: restore member: %w", err)
		}
		if st.members[m.ImageID] == nil {
			st.members[m.ImageID] = map[string]*engine.Member{}
		}
		st.members[m.ImageID][m.MemberID] = &m
	case "task":
		var t engine.Task
		if err := json.Unmarshal(rec.V, &t); err != nil {
			return fmt.Errorf("raftmeta: restore task: %w", err)
		}
		st.tasks[t.ID] = &t
	}
	return nil
}
