package proxy

import (
	"sync"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/sockio"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
)

// watchTick is how often the fasthttp transport's clients with a request
// at the upstream are looked at: a client that left is noticed within it.
const watchTick = 50 * time.Millisecond

// clientWatch abandons the upstream call of a fasthttp request whose client
// closed its connection (or reset it), as the event loop does when gnet
// reports the close and nginx does by default (proxy_ignore_client_abort
// off): the upstream connection is closed, which ends the upstream
// server's work for nobody and frees the connection and the concurrency
// slot at once instead of at the answer or the route timeout. A goroutine
// blocked in the pool's call reads nothing from its client, so one
// goroutine for all of them looks at each client socket every watchTick (a
// recv with MSG_PEEK, sockio.Conn.PeerGone) while any is in flight, and
// exits when none is: a goroutine or a timer per request would cost every
// request, the look costs one lock per request on each side of the call.
type clientWatch struct {
	mu      sync.Mutex
	watched []*watched
	running bool
}

// watched is one request at the upstream; it lives in the Exchange.
type watched struct {
	conn *sockio.Conn
	call upstream.Call
	i    int // index in clientWatch.watched
}

// add starts watching w.conn for w.call.
func (cw *clientWatch) add(w *watched) {
	cw.mu.Lock()
	w.i = len(cw.watched)
	cw.watched = append(cw.watched, w)
	if !cw.running {
		cw.running = true
		go cw.run()
	}
	cw.mu.Unlock()
}

// remove stops watching w; after it returns, w is not looked at again.
func (cw *clientWatch) remove(w *watched) {
	cw.mu.Lock()
	last := len(cw.watched) - 1
	cw.watched[w.i] = cw.watched[last]
	cw.watched[w.i].i = w.i
	cw.watched[last] = nil
	cw.watched = cw.watched[:last]
	cw.mu.Unlock()
}

// run looks at every watched client each tick until none is left. The
// look is made under the lock, so that remove (and the Exchange's reuse by
// another request) waits for it: a syscall per request in flight per tick.
func (cw *clientWatch) run() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	for range t.C {
		cw.mu.Lock()
		if len(cw.watched) == 0 {
			cw.running = false
			cw.mu.Unlock()
			return
		}
		for _, w := range cw.watched {
			if w.conn.PeerGone() {
				w.call.Abandon()
			}
		}
		cw.mu.Unlock()
	}
}
