package raftmeta

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/mosaicimg/mosaic/engine"
)

// Member commands (range 16–31).
const (
	CmdCreateMember CommandType = 16
	CmdUpdateMember CommandType = 17
	CmdDeleteMember CommandType = 18
)

type (
	createMemberV1 struct {
		Member *engine.Member `json:"member"`
		// Max is the image's member quota, chosen by the proposer.
		Max int `json:"max"`
	}
	updateMemberV1 struct {
		Member *engine.Member `json:"member"`
	}
	deleteMemberV1 struct {
		ImageID  string `json:"image_id"`
		MemberID string `json:"member_id"`
	}
)

var _ engine.MemberStore = (*Node)(nil)

// memberCommandName names member commands for logs.
func memberCommandName(t CommandType) (string, bool) {
	switch t {
	case CmdCreateMember:
		return "create-member", true
	case CmdUpdateMember:
		return "update-member", true
	case CmdDeleteMember:
		return "delete-member", true
	}
	return "", false
}

// applyMemberCommand applies member commands; ok is false for other types.
func applyMemberCommand(st *state, t CommandType, version byte, body []byte) (*applyResult, bool) {
	switch t {
	case CmdCreateMember:
		var c createMemberV1
		mustDecode(t, version, 1, body, &c)
		return applyCreateMember(st, c), true
	case CmdUpdateMember:
		var c updateMemberV1
		mustDecode(t, version, 1, body, &c)
		return applyUpdateMember(st, c), true
	case CmdDeleteMember:
		var c deleteMemberV1
		mustDecode(t, version, 1, body, &c)
		return applyDeleteMember(st, c), true
	}
	return nil, false
}

// setMembers replaces an image's member map with a modified copy: stored
// maps are never changed in place, so snapshots may share them.
func setMembers(st *state, imageID string, change func(m map[string]*engine.Member)) {
	m := maps.Clone(st.members[imageID])
	if m == nil {
		m = map[string]*engine.Member{}
	}
	change(m)
	if len(m) == 0 {
		delete(st.members, imageID)
		return
	}
	st.members[imageID] = m
}

func applyCreateMember(st *state, c createMemberV1) *applyResult {
	m := c.Member
	if m == nil || m.ImageID == "" || m.MemberID == "" {
		return &applyResult{Err: fmt.Errorf("create member: %w: incomplete", engine.ErrInvalid)}
	}
	cur := st.members[m.ImageID]
	if _, ok := cur[m.MemberID]; ok {
		return &applyResult{Err: fmt.Errorf("create member %s/%s: %w", m.ImageID, m.MemberID, engine.ErrExists)}
	}
	if c.Max > 0 && len(cur) >= c.Max {
		return &applyResult{Err: fmt.Errorf("create member %s/%s: %w", m.ImageID, m.MemberID, engine.ErrTooLarge)}
	}
	setMembers(st, m.ImageID, func(all map[string]*engine.Member) { all[m.MemberID] = m })
	v := *m
	return &applyResult{Member: &v}
}

func applyUpdateMember(st *state, c updateMemberV1) *applyResult {
	m := c.Member
	if m == nil {
		return &applyResult{Err: fmt.Errorf("update member: %w: no member", engine.ErrInvalid)}
	}
	if _, ok := st.members[m.ImageID][m.MemberID]; !ok {
		return &applyResult{Err: fmt.Errorf("update member %s/%s: %w", m.ImageID, m.MemberID, engine.ErrNotFound)}
	}
	setMembers(st, m.ImageID, func(all map[string]*engine.Member) { all[m.MemberID] = m })
	v := *m
	return &applyResult{Member: &v}
}

func applyDeleteMember(st *state, c deleteMemberV1) *applyResult {
	if _, ok := st.members[c.ImageID][c.MemberID]; !ok {
		return &applyResult{Err: fmt.Errorf("delete member %s/%s: %w", c.ImageID, c.MemberID, engine.ErrNotFound)}
	}
	setMembers(st, c.ImageID, func(all map[string]*engine.Member) { delete(all, c.MemberID) })
	return &applyResult{}
}

// GetMember implements engine.MemberStore.
func (n *Node) GetMember(ctx context.Context, imageID, memberID string) (*engine.Member, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var out *engine.Member
	n.fsm.read(func(st *state) {
		if m, ok := st.members[imageID][memberID]; ok {
			v := *m
			out = &v
		}
	})
	if out == nil {
		return nil, fmt.Errorf("raftmeta: member %s of image %s: %w", memberID, imageID, engine.ErrNotFound)
	}
	return out, nil
}

// ListMembers implements engine.MemberStore.
func (n *Node) ListMembers(ctx context.Context, imageID string) ([]*engine.Member, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var out []*engine.Member
	n.fsm.read(func(st *state) {
		for _, m := range st.members[imageID] {
			v := *m
			out = append(out, &v)
		}
	})
	slices.SortFunc(out, func(a, b *engine.Member) int { return strings.Compare(a.MemberID, b.MemberID) })
	return out, nil
}

// MembershipsOf implements engine.MemberStore.
func (n *Node) MembershipsOf(ctx context.Context, memberID string) (map[string]*engine.Member, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	out := map[string]*engine.Member{}
	n.fsm.read(func(st *state) {
		for imageID, ms := range st.members {
			if m, ok := ms[memberID]; ok {
				v := *m
				out[imageID] = &v
			}
		}
	})
	return out, nil
}

// CreateMember implements engine.MemberStore.
func (n *Node) CreateMember(ctx context.Context, m *engine.Member, max int) (*engine.Member, error) {
	res, err := n.propose(ctx, CmdCreateMember, createMemberV1{Member: m, Max: max})
	if err != nil {
		return nil, err
	}
	return res.Member, nil
}

// UpdateMember implements engine.MemberStore.
func (n *Node) UpdateMember(ctx context.Context, m *engine.Member) (*engine.Member, error) {
	res, err := n.propose(ctx, CmdUpdateMember, updateMemberV1{Member: m})
	if err != nil {
		return nil, err
	}
	return res.Member, nil
}

// DeleteMember implements engine.MemberStore.
func (n *Node) DeleteMember(ctx context.Context, imageID, memberID string) error {
	_, err := n.propose(ctx, CmdDeleteMember, deleteMemberV1{ImageID: imageID, MemberID: memberID})
	return err
}
