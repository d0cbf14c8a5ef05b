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

// errNotServing is Alive's answer before the engine has booted.
var errNotServing = errors.New("event loops not started")

// Alive returns nil once every event loop that has served a client ran a
// task handed to it, or an error naming how many did not before ctx ended.
// A loop that never had a client has run none of the gateway's code, so
// nothing of it can be stuck; its first client brings it into the check
// (loopOf). It may be called from any goroutine, and concurrently.
func (s *Server) Alive(ctx context.Context) error {
	s.mu.Lock()
	up := s.up
	loops := make([]gnet.EventLoop, 0, len(s.loops))
	for el := range s.loops {
		loops = append(loops, el)
	}
	s.mu.Unlock()
	if !up {
		return errNotServing
	}
	// Buffered for every loop: a wedged loop that comes back after ctx
	// ended still finds room, and nothing waits on it.
	beats := make(chan struct{}, len(loops))
	for i, el := range loops {
		err := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			beats <- struct{}{}
			return nil
		}))
		if err != nil {
			return fmt.Errorf("event loop %d of %d: %w", i+1, len(loops), err)
		}
	}
	for n := range loops {
		select {
		case <-beats:
		case <-ctx.Done():
			return fmt.Errorf("%d of %d event loops did not run a task: %w", len(loops)-n, len(loops), ctx.Err())
		}
	}
	return nil
}
