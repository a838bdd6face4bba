package raftmeta

import (
	"encoding/json"
	"fmt"

	"github.com/mosaicimg/mosaic/engine"
)

// CommandType identifies a log entry's command. The first byte of every
// entry is its type; the second its body version; the rest its JSON body.
// A type with the IgnorableFlag bit may be skipped by a node that does not
// know it (an optional feature); any other unknown type stops the node
// (panic), because applying the log without it would diverge.
type CommandType byte

// IgnorableFlag marks command types older nodes may skip.
const IgnorableFlag CommandType = 0x80

// Command types. Never renumber: they are in every stored log. Numbers are
// assigned by range: images 1–15, members 16–31, tasks/import 32–47,
// key-manager secrets 48–63, cluster membership 64–79, GC/uploads/repair 80–95.
const (
	CmdCreateImage CommandType = 1
	CmdUpdateImage CommandType = 2
	CmdDeleteImage CommandType = 3
)

func (t CommandType) String() string {
	switch t &^ IgnorableFlag {
	case CmdCreateImage:
		return "create-image"
	case CmdUpdateImage:
		return "update-image"
	case CmdDeleteImage:
		return "delete-image"
	case CmdPutNode:
		return "put-node"
	case CmdRemoveNode:
		return "remove-node"
	case CmdPutLeases:
		return "put-leases"
	}
	if name := secretCommandName(t); name != "" {
		return name
	}
	if name, ok := memberCommandName(t &^ IgnorableFlag); ok {
		return name
	}
	if name, ok := taskCommandName(t &^ IgnorableFlag); ok {
		return name
	}
	return fmt.Sprintf("command-%d", byte(t))
}

// Bodies. Each carries everything Apply needs; the proposer has already
// chosen IDs, timestamps and the expected revision.
type (
	createImageV1 struct {
		Image *engine.Image `json:"image"`
	}
	updateImageV1 struct {
		Image      *engine.Image `json:"image"`
		IfRevision uint64        `json:"if_revision"`
	}
	deleteImageV1 struct {
		ID         string `json:"id"`
		IfRevision uint64 `json:"if_revision"`
	}
)

// encodeCommand builds a log entry.
func encodeCommand(t CommandType, version byte, body any) ([]byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("raftmeta: encode %s: %w", t, err)
	}
	return append([]byte{byte(t), version}, b...), nil
}

// applyResult is what Apply returns for every command.
// It travels as JSON when a follower forwards a command to the leader
// (forward.go), so its fields are exported; Err travels separately.
type applyResult struct {
	Err    error          `json:"-"`
	Image  *engine.Image  `json:"image,omitempty"`
	Member *engine.Member `json:"member,omitempty"`
}
