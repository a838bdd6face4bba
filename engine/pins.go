package engine

import "sync"

// Pins protects chunks that in-flight uploads reference from a concurrent
// garbage collection. An upload pins a chunk before it asks the store
// whether the chunk exists (or before it stores it), and keeps its pins
// until the image record that refers to them is committed or the upload
// has failed. The collector deletes a chunk only while holding the pins'
// lock and only if it is not pinned. So either the upload's Has sees the
// deletion (and writes the chunk again) or the collector sees the pin (and
// keeps it).
//
// One more case needs care: an upload may commit its record after the
// collector listed the live images (so the mark missed it) and release its
// pins before the sweep. Pins released while a collection runs are
// therefore retained until that collection ends.
type Pins struct {
	mu         sync.RWMutex
	count      map[ChunkID]int
	collecting int
	retained   map[ChunkID]struct{}
}

// NewPins returns an empty pin set.
func NewPins() *Pins {
	return &Pins{count: make(map[ChunkID]int), retained: make(map[ChunkID]struct{})}
}

// PinSession collects the pins of one upload. It is safe for concurrent use
// by the upload's workers.
type PinSession struct {
	p   *Pins
	mu  sync.Mutex
	ids []ChunkID
}

// Begin starts a session.
func (p *Pins) Begin() *PinSession { return &PinSession{p: p} }

// Pin protects id until End and then runs check while the pin set cannot
// be swept (typically the store's Has or Put).
func (s *PinSession) Pin(id ChunkID, check func() error) error {
	s.p.mu.Lock()
	s.p.count[id]++
	s.p.mu.Unlock()
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	s.p.mu.RLock()
	defer s.p.mu.RUnlock()
	return check()
}

// End releases the session's pins. It may be called more than once.
func (s *PinSession) End() {
	s.mu.Lock()
	ids := s.ids
	s.ids = nil
	s.mu.Unlock()
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	for _, id := range ids {
		if s.p.count[id]--; s.p.count[id] <= 0 {
			delete(s.p.count, id)
		}
		if s.p.collecting > 0 {
			s.p.retained[id] = struct{}{}
		}
	}
}

// IsPinned reports whether an upload on this node still pins id.
func (p *Pins) IsPinned(id ChunkID) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.count[id] > 0
}

// Pinned returns the number of distinct pinned chunks.
func (p *Pins) Pinned() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.count)
}

// beginCollect marks the start of a collection: from now until the
// returned function is called, released pins are retained.
func (p *Pins) beginCollect() (end func()) {
	p.mu.Lock()
	p.collecting++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.collecting--; p.collecting == 0 {
			clear(p.retained)
		}
	}
}

// Sweep calls del with the candidates that are neither pinned nor retained,
// while no new pin check can run. del must not call back into Pins. It
// returns how many candidates it kept.
func (p *Pins) Sweep(candidates []ChunkID, del func(ids []ChunkID) error) (kept int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	free := make([]ChunkID, 0, len(candidates))
	for _, id := range candidates {
		_, retained := p.retained[id]
		if p.count[id] == 0 && !retained {
			free = append(free, id)
		}
	}
	if len(free) == 0 {
		return len(candidates), nil
	}
	return len(candidates) - len(free), del(free)
}
