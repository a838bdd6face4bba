package replication

import (
	"context"
	"sync"

	"github.com/mosaicimg/mosaic/engine"
)

// NodeStatus is one node's storage report.
type NodeStatus struct {
	ID       string            `json:"id"`
	Addr     string            `json:"addr,omitempty"`
	Storage  bool              `json:"storage"`
	Store    engine.StoreUsage `json:"store"`
	Repair   RepairProgress    `json:"repair"`
	Replicas int               `json:"replicas"`
	// Error is set when the node could not be asked.
	Error string `json:"error,omitempty"`
}

// ClusterStatus is what `mosaic cluster status` shows.
type ClusterStatus struct {
	// Meta is the metadata (Raft) view of the node that answered.
	Meta  any          `json:"meta"`
	Nodes []NodeStatus `json:"nodes"`
}

// Reporter builds the status reports (it implements api.ClusterReporter).
type Reporter struct {
	store  *Store
	repair *Repairer
	meta   func() any
}

// NewReporter returns a reporter; meta returns the metadata view.
func NewReporter(store *Store, repair *Repairer, meta func() any) *Reporter {
	return &Reporter{store: store, repair: repair, meta: meta}
}

// NodeStatus reports this node.
func (rp *Reporter) NodeStatus(ctx context.Context) (any, error) { return rp.nodeStatus(ctx) }

func (rp *Reporter) nodeStatus(ctx context.Context) (*NodeStatus, error) {
	u, err := engine.MeasureStore(ctx, rp.store.local)
	if err != nil {
		return nil, err
	}
	s := &NodeStatus{ID: rp.store.cfg.SelfID, Store: u, Replicas: rp.store.cfg.Replicas}
	if rp.repair != nil {
		s.Repair = rp.repair.Progress()
	}
	return s, nil
}

// ClusterStatus gathers every node's report.
func (rp *Reporter) ClusterStatus(ctx context.Context) (any, error) {
	ms := rp.store.members.Members()
	out := ClusterStatus{Meta: rp.meta(), Nodes: make([]NodeStatus, len(ms))}
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s *NodeStatus
			var err error
			if m.ID == rp.store.cfg.SelfID {
				s, err = rp.nodeStatus(ctx)
			} else {
				s, err = rp.store.fetch.c.status(ctx, m.Addr)
			}
			if err != nil {
				s = &NodeStatus{ID: m.ID, Error: err.Error()}
			}
			s.Addr, s.Storage = m.Addr, m.Storage
			out.Nodes[i] = *s
		}()
	}
	wg.Wait()
	return out, nil
}
