package evloop

import (
	"context"
	"errors"
	"fmt"

	"github.com/panjf2000/gnet/v2"
)

// Liveness must not be read on the public port: with GATEWAY_LOOP_MAX_CONNS
// clients open, a probe there is one client too many and gets 503
// gateway-busy, and a kubelet restarts a gateway that is healthy and merely
// full, dropping every connection it held. What liveness must tell instead
// is whether the loops still run: a loop stuck in a callback serves none of
// its clients, and a restart is the only cure for that.
//
// Alive asks each loop to prove it: a task handed to the loop
// (EventLoop.Execute) runs only when the loop comes back to its event wait,
// so a loop wedged in a callback never runs it. The check costs nothing
// between probes (no timer wakes a quiet loop for it, README "Idle cost"),
// and a full loop answers at its next turn like any other.

// errNotServing is Alive's answer before the engine has booted, and
// errStopped once it has begun to shut down.
var (
	errNotServing = errors.New("event loops not started")
	errStopped    = errors.New("event loops stopped")
)

// Alive returns nil once every event loop that has served a client ran a
// task handed to it, or an error naming how many did not before ctx ended.
// A loop that never had a client has run none of the gateway's code, so
// nothing of it can be stuck; its first client brings it into the check
// (loopOf). It may be called from any goroutine, and concurrently.
func (s *Server) Alive(ctx context.Context) error {
	beats, n, err := s.beat()
	if err != nil {
		return err
	}
	for i := range n {
		select {
		case <-beats:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d event loops did not run a task: %w", n-i, n, ctx.Err())
		}
	}
	return nil
}

// beat hands every loop that has served a client a task that sends on
// beats, and says how many it handed. It holds s.mu while it does, as
// OnTick does: OnShutdown takes s.mu to set shut before gnet closes the
// loops' pollers, and a task handed after that wrote to a closed eventfd,
// or to whatever took its number (gnet refuses Execute only once the
// pollers are closed).
func (s *Server) beat() (beats chan struct{}, n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.up:
		return nil, 0, errNotServing
	case s.shut:
		return nil, 0, errStopped
	}
	// Buffered for every loop: a wedged loop that comes back after ctx
	// ended still finds room, and nothing waits on it.
	beats = make(chan struct{}, len(s.loops))
	for el := range s.loops {
		n++
		err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			beats <- struct{}{}
			return nil
		}))
		if err != nil {
			return nil, 0, fmt.Errorf("event loop %d of %d: %w", n, len(s.loops), err)
		}
	}
	return beats, n, nil
}
