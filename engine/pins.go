package engine

import "sync"

// Pins protects chunks that in-flight uploads reference from a concurrent
// garbage collection. An upload pins a chunk before it asks the store
// whether the chunk exists; the collector deletes a chunk only while holding
// the pins' lock and only if it is not pinned. So either the upload's Has
// sees the deletion (and writes the chunk again) or the collector sees the
// pin (and keeps it).
type Pins struct {
	mu    sync.RWMutex
	count map[ChunkID]int
}

// NewPins returns an empty pin set.
func NewPins() *Pins { return &Pins{count: make(map[ChunkID]int)} }

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
// be swept (typically the store's Has).
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

// End releases the session's pins.
func (s *PinSession) End() {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	for _, id := range s.ids {
		if s.p.count[id]--; s.p.count[id] <= 0 {
			delete(s.p.count, id)
		}
	}
	s.ids = nil
}

// Sweep calls del with the candidates that are not pinned, while no new pin
// check can run. del must not call back into Pins.
func (p *Pins) Sweep(candidates []ChunkID, del func(ids []ChunkID) error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	keep := candidates[:0:0]
	for _, id := range candidates {
		if p.count[id] == 0 {
			keep = append(keep, id)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return del(keep)
}
