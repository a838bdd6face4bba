package raftmeta

import (
	"context"
	"fmt"

	"github.com/mosaicimg/mosaic/engine"
)

// Task commands (range 32–47).
const (
	CmdPutTask CommandType = 32
)

type putTaskV1 struct {
	Task *engine.Task `json:"task"`
}

var _ engine.TaskStore = (*Node)(nil)

func taskCommandName(t CommandType) (string, bool) {
	if t == CmdPutTask {
		return "put-task", true
	}
	return "", false
}

// applyTaskCommand applies task commands; ok is false for other types.
func applyTaskCommand(st *state, t CommandType, version byte, body []byte) (*applyResult, bool) {
	switch t {
	case CmdPutTask:
		var c putTaskV1
		mustDecode(t, version, 1, body, &c)
		if c.Task == nil || c.Task.ID == "" {
			return &applyResult{Err: fmt.Errorf("put task: %w: no id", engine.ErrInvalid)}, true
		}
		st.tasks[c.Task.ID] = c.Task
		return &applyResult{}, true
	}
	return nil, false
}

// GetTask implements engine.TaskStore.
func (n *Node) GetTask(ctx context.Context, id string) (*engine.Task, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var out *engine.Task
	n.fsm.read(func(st *state) {
		if t, ok := st.tasks[id]; ok {
			out = t.Clone()
		}
	})
	if out == nil {
		return nil, fmt.Errorf("raftmeta: task %s: %w", id, engine.ErrNotFound)
	}
	return out, nil
}

// ListTasks implements engine.TaskStore.
func (n *Node) ListTasks(ctx context.Context, match func(*engine.Task) bool) ([]*engine.Task, error) {
	if err := n.readBarrier(ctx); err != nil {
		return nil, err
	}
	var out []*engine.Task
	n.fsm.read(func(st *state) {
		for _, t := range st.tasks {
			if match == nil || match(t) {
				out = append(out, t.Clone())
			}
		}
	})
	return out, nil
}

// PutTask implements engine.TaskStore.
func (n *Node) PutTask(ctx context.Context, t *engine.Task) error {
	_, err := n.propose(ctx, CmdPutTask, putTaskV1{Task: t})
	return err
}
