package server

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// newConnGrace is how long a connection may stay silent after it was
// accepted before a stop stops waiting for its request. Clients send it right
// after connecting; the bound is for one that never does (a preconnect, a TCP
// probe). It is net/http's own: Shutdown waits for a silent connection until
// it is about 5 s old and then closes it as idle (golang/go#22682), so the
// wait here adds nothing to a stop. What changes is that a request arriving
// meanwhile is served, where Shutdown would drop it.
const newConnGrace = 5 * time.Second

// freshConns tracks connections net/http has accepted but not yet read a
// request head from (http.StateNew), with when each was accepted. net/http's
// Shutdown drops a request whose head arrives after it began on such a
// connection: the connection is closed unanswered and the client sees EOF,
// which it retries only for idempotent requests. A caller that connected in
// the last moment before the stop (one not following discovery, or a load
// balancer that has not caught up) would lose its POST. So shutdown closes
// the listener itself, lets these connections speak (settle), and calls
// Shutdown after: their requests are then in flight and drained like any
// other.
type freshConns struct {
	n  atomic.Int32 // len(m), read without the lock on every state change
	mu sync.Mutex
	m  map[net.Conn]time.Time // when accepted
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
			f.m = make(map[net.Conn]time.Time)
		}
		f.m[c] = time.Now()
	} else {
		delete(f.m, c)
	}
	f.n.Store(int32(len(f.m)))
}

// waiting reports whether a fresh connection accepted less than grace ago remains.
func (f *freshConns) waiting(grace time.Duration) bool {
	if f.n.Load() == 0 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, accepted := range f.m {
		if time.Since(accepted) < grace {
			return true
		}
	}
	return false
}

// settle waits until no connection accepted less than grace ago is fresh, or until ctx ends.
func (f *freshConns) settle(ctx context.Context, grace time.Duration) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for f.waiting(grace) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// closeSilent closes the connections that have not sent a request yet.
func (f *freshConns) closeSilent() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.m {
		_ = c.Close() // net/http's goroutine for it sees the read fail and forgets it
	}
}

// settleReserve is the part of the drain budget kept for Shutdown after the
// wait for silent connections: a tenth, at most 100 ms (their goroutines
// end within a millisecond of the close).
func settleReserve(budget time.Duration) time.Duration {
	return min(budget/10, 100*time.Millisecond)
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
