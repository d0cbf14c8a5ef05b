package server

import (
	"sync"
	"time"
)

// Phases records when each start-up phase of a binary finished, measured from
// NewPhases, for the one debug line a service logs once wired (the start-up
// benchmark reads it). Phases that run concurrently end in any order, so Done
// is safe for concurrent use.
type Phases struct {
	start time.Time
	mu    sync.Mutex
	args  []any
}

// NewPhases starts the clock.
func NewPhases() *Phases { return &Phases{start: time.Now()} }

// Done records that the named phase has just finished.
func (p *Phases) Done(name string) {
	d := time.Since(p.start).String()
	p.mu.Lock()
	p.args = append(p.args, name, d)
	p.mu.Unlock()
}

// Args are the recorded phases as slog key-value pairs, in the order they
// finished.
func (p *Phases) Args() []any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]any(nil), p.args...)
}
