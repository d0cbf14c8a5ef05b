package evloop

import (
	"math"
	"os"
	"time"

	"github.com/valyala/fasthttp"
)

// sweep enforces every timeout of the loop's connections.
func (l *loop) sweep(t time.Time) {
	l.due.Store(false)
	l.sweeps.Add(1)
	now := l.s.at(t)
	l.now = now
	o := &l.s.o
	// next is when the next sweep is needed: the nearest deadline still
	// ahead, or now when something needs a look every Tick (a request in
	// flight, an answer not yet written out, a lingering client's FIN).
	next := int64(math.MaxInt64)
	for cl := range l.clients {
		switch {
		case cl.deadline != 0 && now >= cl.deadline:
			l.cancel(cl, fasthttp.ErrTimeout)
		case cl.lingerSince != 0 && !cl.gone && (cl.finned || o.WriteTimeout <= 0) && now-cl.lingerSince >= int64(o.Linger):
			// From its FIN (fin restarts lingerSince): its answer may be
			// megabytes to a slow reader, which the write timeout bounds
			// until then; without one, from the answer's write, as ever.
			cl.lingerSince = 0
			_ = cl.c.Close()
		case cl.busy || cl.gone || cl.closing:
		case cl.started != 0 && o.ReadTimeout > 0 && now-cl.started >= int64(o.ReadTimeout):
			l.reject(cl, os.ErrDeadlineExceeded)
		case cl.started == 0 && o.IdleTimeout > 0 && now-cl.active >= int64(o.IdleTimeout):
			cl.closing = true
			_ = cl.c.Close()
		}
		if cl.lingerSince != 0 && !cl.finned {
			l.fin(cl) // its answer left since the last sweep
		}
		if cl.closeSent && !cl.gone && cl.c.OutboundBuffered() == 0 {
			_ = cl.c.Close() // its last answer is out; OnClose uncounts it
		}
		if cl.paused && !cl.gone && !cl.closing && cl.c.OutboundBuffered() == 0 {
			l.serve(cl)  // its last answer left: the requests behind it go on
			l.settle(cl) // what they held goes with them, as after advance's serve
		}
		next = min(next, cl.due(now, o))
		if cl.gone || (cl.closing && !cl.closeSent && (cl.lingerSince == 0 || cl.finned)) || o.WriteTimeout <= 0 {
			continue
		}
		switch {
		case cl.c.OutboundBuffered() == 0:
			cl.stalled = 0
		case cl.stalled == 0:
			cl.stalled = now
		case now-cl.stalled >= int64(o.WriteTimeout):
			cl.closing = true
			_ = cl.c.Close()
		}
	}
	l.dropLeft()
	for _, pl := range l.pools {
		keep := pl.idle[:0]
		for _, uc := range pl.idle {
			if now-uc.used >= int64(o.UpstreamIdle) {
				_ = uc.c.Close() // out of idle at once: the close happens later
			} else {
				keep = append(keep, uc)
				next = min(next, uc.used+int64(o.UpstreamIdle))
			}
		}
		clear(pl.idle[len(keep):])
		pl.idle = keep
	}
	if l.busy.Load() > 0 || next-now <= int64(Tick) {
		next = 0 // the next Tick's sweep, as ever
	}
	l.wake.Store(next)
	l.quiet.Store(l.empty())
}

// due is when the sweep next has something to do for cl: now if it must
// look every Tick (a request in flight, an answer waiting to be written,
// a FIN to send), else its nearest deadline, MaxInt64 if none. It runs
// after the sweep acted on cl, so a client it just closed or refused
// (closing, lingering) is judged by its new state.
func (cl *client) due(now int64, o *Options) int64 {
	switch {
	case cl.busy || cl.deadline != 0:
		return now
	case cl.paused && !cl.gone && !cl.closing:
		return now // resumed by the sweep that sees its answer out
	case cl.lingerSince != 0 && !cl.gone:
		if !cl.finned {
			return now // its FIN waits for the answer to be out
		}
		return cl.lingerSince + int64(o.Linger)
	case cl.closeSent && !cl.gone:
		return now // closed by the sweep that sees its last answer out
	case cl.gone || cl.closing:
		return math.MaxInt64 // its close is under way
	case o.WriteTimeout > 0 && cl.c.OutboundBuffered() > 0:
		return now // the write timeout counts from the sweep that sees it stalled
	case cl.started != 0:
		if o.ReadTimeout > 0 {
			return cl.started + int64(o.ReadTimeout)
		}
	case o.IdleTimeout > 0:
		return cl.active + int64(o.IdleTimeout)
	}
	return math.MaxInt64
}

// empty: no client and no upstream connection open or being dialled, so
// nothing for a sweep to time out. A pool of a left endpoint is no longer
// in pools, but its connections are busy, and their clients are listed.
func (l *loop) empty() bool {
	if len(l.clients) > 0 {
		return false
	}
	for _, pl := range l.pools {
		if pl.open > 0 {
			return false
		}
	}
	return true
}

// dropLeft retires the pools of endpoints that left discovery: their idle
// connections close now, busy ones when their answer is in (ready), and
// the next request to that address, should it come back, gets a new pool.
func (l *loop) dropLeft() {
	e := l.s.o.Endpoints
	if e == nil {
		return
	}
	v := e.Version()
	if v == l.endpoints {
		return
	}
	l.endpoints = v
	for addr, pl := range l.pools {
		if e.Has(addr) {
			continue
		}
		pl.left = true
		delete(l.pools, addr)
		for _, uc := range pl.idle {
			_ = uc.c.Close()
		}
		clear(pl.idle)
		pl.idle = pl.idle[:0]
	}
}
