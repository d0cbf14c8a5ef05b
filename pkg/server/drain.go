package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// newConnGrace bounds how long a stop waits, after the listener closed, for
// connections accepted just before to send their first request head.
// Clients send it right after connecting; the bound is for one that never
// does (a preconnect, a TCP probe). net/http's Shutdown itself waits as long
// for such a connection (it counts one as idle only after 5 s without a
// request, golang/go#22682), so the wait costs a stop nothing it did not cost
// before: what changes is that a request arriving meanwhile is served.
const newConnGrace = 5 * time.Second

// freshConns tracks connections net/http has accepted but not yet read a
// request head from (http.StateNew). net/http's Shutdown drops a request
// whose head arrives after it began on such a connection: the connection is
// closed unanswered and the client sees EOF, which it retries only for
// idempotent requests. A caller that connected in the last moment before the
// stop (one not following discovery, or a load balancer that has not caught
// up) would lose its POST. So shutdown closes the listener itself, lets these
// connections speak (settle), and calls Shutdown after: their requests are
// then in flight and drained like any other.
type freshConns struct {
	n  atomic.Int32 // len(m), read without the lock on every state change
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

// track is the http.Server's ConnState hook. Once no connection is fresh, a
// request's Active and Idle changes cost one atomic load.
func (f *freshConns) track(c net.Conn, st http.ConnState) {
	if st != http.StateNew && f.n.Load() == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if st == http.StateNew {
		if f.m == nil {
			f.m = make(map[net.Conn]struct{})
		}
		f.m[c] = struct{}{}
	} else {
		delete(f.m, c)
	}
	f.n.Store(int32(len(f.m)))
}

// settle waits until no connection is fresh, for at most grace or until ctx ends.
func (f *freshConns) settle(ctx context.Context, grace time.Duration) {
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for f.n.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

// onceCloser lets shutdown close the listener before http.Server.Shutdown,
// which closes it again: the second Close must not fail the drain.
type onceCloser struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *onceCloser) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}
