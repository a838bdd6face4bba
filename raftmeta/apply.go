package raftmeta

import (
	"encoding/json"
	"fmt"

	"github.com/mosaicimg/mosaic/engine"
)

// applyCommand applies one log entry to st and returns its result. It is a
// pure function of (st, data): no clock, no randomness, no I/O.
func applyCommand(st *state, data []byte) *applyResult {
	if len(data) < 2 {
		panic(fmt.Sprintf("raftmeta: log entry of %d bytes", len(data)))
	}
	t, version, body := CommandType(data[0]), data[1], data[2:]
	switch t &^ IgnorableFlag {
	case CmdCreateImage:
		var c createImageV1
		mustDecode(t, version, 1, body, &c)
		return applyCreateImage(st, c)
	case CmdUpdateImage:
		var c updateImageV1
		mustDecode(t, version, 1, body, &c)
		return applyUpdateImage(st, c)
	case CmdDeleteImage:
		var c deleteImageV1
		mustDecode(t, version, 1, body, &c)
		return applyDeleteImage(st, c)
	case CmdPutNode:
		var c putNodeV1
		mustDecode(t, version, 1, body, &c)
		return applyPutNode(st, c)
	case CmdRemoveNode:
		var c removeNodeV1
		mustDecode(t, version, 1, body, &c)
		return applyRemoveNode(st, c)
	case CmdCreateSecret, CmdDeleteSecret:
		return applySecretCommand(st, t, version, body)
	case CmdPutLeases:
		return applyPutLeases(st, version, body)
	}
	if res, ok := applyMemberCommand(st, t&^IgnorableFlag, version, body); ok {
		return res
	}
	if res, ok := applyTaskCommand(st, t&^IgnorableFlag, version, body); ok {
		return res
	}
	if t&IgnorableFlag != 0 {
		return &applyResult{}
	}
	panic(fmt.Sprintf("raftmeta: unknown command type %d (upgrade this node)", byte(t)))
}

func mustDecode(t CommandType, got, want byte, body []byte, v any) {
	if got != want {
		panic(fmt.Sprintf("raftmeta: %s version %d, this node knows %d (upgrade this node)", t, got, want))
	}
	if err := json.Unmarshal(body, v); err != nil {
		panic(fmt.Sprintf("raftmeta: decode %s: %v", t, err))
	}
}

func applyCreateImage(st *state, c createImageV1) *applyResult {
	if c.Image == nil || c.Image.ID == "" {
		return &applyResult{Err: fmt.Errorf("create image: %w: no id", engine.ErrInvalid)}
	}
	if _, ok := st.images[c.Image.ID]; ok {
		return &applyResult{Err: fmt.Errorf("create image %s: %w", c.Image.ID, engine.ErrExists)}
	}
	img := c.Image
	img.Revision = 1
	st.images[img.ID] = img
	st.indexImage(nil, img)
	return &applyResult{Image: img.Clone()}
}

func applyUpdateImage(st *state, c updateImageV1) *applyResult {
	if c.Image == nil {
		return &applyResult{Err: fmt.Errorf("update image: %w: no image", engine.ErrInvalid)}
	}
	cur, ok := st.images[c.Image.ID]
	if !ok {
		return &applyResult{Err: fmt.Errorf("update image %s: %w", c.Image.ID, engine.ErrNotFound)}
	}
	if cur.Revision != c.IfRevision {
		return &applyResult{Err: fmt.Errorf("update image %s: %w: revision %d, expected %d",
			c.Image.ID, engine.ErrConflict, cur.Revision, c.IfRevision)}
	}
	img := c.Image
	img.Revision = cur.Revision + 1
	st.images[img.ID] = img
	st.indexImage(cur, img)
	return &applyResult{Image: img.Clone()}
}

func applyDeleteImage(st *state, c deleteImageV1) *applyResult {
	cur, ok := st.images[c.ID]
	if !ok {
		return &applyResult{Err: fmt.Errorf("delete image %s: %w", c.ID, engine.ErrNotFound)}
	}
	if cur.Revision != c.IfRevision {
		return &applyResult{Err: fmt.Errorf("delete image %s: %w: revision %d, expected %d",
			c.ID, engine.ErrConflict, cur.Revision, c.IfRevision)}
	}
	delete(st.images, c.ID)
	st.unindexImage(cur)
	return &applyResult{}
}
