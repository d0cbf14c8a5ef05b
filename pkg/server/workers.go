package server

import (
	"context"
	"errors"
	"sync"
)

// Errors of Workers.Start: it starts the workers once, and never after Stop.
var (
	ErrWorkersStarted = errors.New("start the workers: they were started before")
	ErrWorkersStopped = errors.New("start the workers: they were stopped before")
)

// Workers is the start and stop of a service's background work (outbox
// relay, consumers, housekeeping): what its Start runs as a start-up step of
// ServeStarting and its OnShutdown hook ends, as Cleanup is what its wiring
// opened and the hook closes. It lives here, beside Cleanup, because both
// are halves of the start and stop pkg/server orders (a start-up step, a
// shutdown hook); a package of its own would be one more name in the
// conventions for a type whose every user already imports this package.
//
// Start and Stop may be called from different goroutines (a test's cleanup
// while Start runs, a host stopping a part during its start-up), so Workers
// holds the one lock they share: Stop waits for a Start under way and ends
// what it started, rather than reading a stop function Start has not set
// yet and leaving those workers running on closed connections.
//
// A Start after Stop, or a second Start, is refused with an error, not
// logged and ignored: Start is a start-up step, and an error there fails the
// start (the server shuts down and says why), where a warning would let
// /readyz answer 200 for an instance whose relay and consumers never run.
// pkg/server waits for its start-up steps before it runs the shutdown hooks,
// so a service run by it never meets either error; a caller that orders
// Start and Stop itself (tests, a host) does, and can tell.
//
// The zero value is ready.
type Workers struct {
	mu      sync.Mutex
	started bool
	stopped bool
	stop    func(context.Context) // nil once run, or when start gave none
}

// Start runs start, which starts the workers under ctx and returns what
// stops them, unless they were started or stopped before (ErrWorkersStarted,
// ErrWorkersStopped; start is not called then). start that fails must leave
// nothing running: its error is returned, and a later Start may try again.
// A Stop called meanwhile waits until start has returned.
func (w *Workers) Start(ctx context.Context, start func(context.Context) (stop func(context.Context), err error)) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
		return ErrWorkersStopped
	case w.started:
		return ErrWorkersStarted
	}
	stop, err := start(ctx)
	if err != nil {
		return err
	}
	w.started, w.stop = true, stop
	return nil
}

// Stop ends the workers Start started, passing ctx to their stop function
// (which decides what ctx's end cuts off), after waiting for a Start under
// way; from then on Start refuses. It returns once they have ended, also
// when another Stop ended them: the second does nothing more.
func (w *Workers) Stop(ctx context.Context) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	if w.stop != nil {
		w.stop(ctx)
		w.stop = nil
	}
}
