package evloop

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
	"go.opentelemetry.io/otel/metric"

	"github.com/shanhai-dev/shanhai/gateway/internal/proxy"
)

// budget bounds the bytes every loop together holds for requests not yet
// handed upstream: a connection's unread input in gnet's buffer and a
// chunked message being followed (chunked.msg). The body limit bounds one
// connection (some 6-8 times it for a body in 1-byte chunks, README
// "Chunked messages on the event loop"), but not how many connections hold
// that much at once: sixteen slow clients at the 1 MiB default held the heap
// at the deployment's GOMEMLIMIT.
//
// nginx's answer to the same problem is a small memory buffer per request
// (client_body_buffer_size, 8 or 16 KiB) and the rest of a body spooled to
// a temporary file. The gateway has no disk to spool to (a container with
// a memory limit, no volume for bodies), and a spool file written from an
// event loop would block it; so the bytes stay in memory, and what is
// bounded is their sum. A request that would pass it is refused 503, not
// 413: the request is not too large (it fits the body limit, and would be
// taken on a quieter gateway), the gateway is busy.
type budget struct {
	limit   int64          // bytes; 0: unbounded
	held    atomic.Int64   // bytes charged now, over all connections
	refused proxy.Refusals // connections refused since the start
}

// move sets a connection's charge (*charged) to n bytes. A growth that
// would pass the limit is not made, and move says false.
func (b *budget) move(charged *int64, n int64) bool {
	d := n - *charged
	if d > 0 && b.limit > 0 {
		if b.held.Add(d) > b.limit {
			b.held.Add(-d) // another loop may have seen it over meanwhile: it refused, which errs on the safe side
			return false
		}
	} else {
		b.held.Add(d)
	}
	*charged = n
	return true
}

// holding is what cl holds now for requests not yet handed upstream: the
// followed message's array (its capacity: append doubles it, and all of
// it stays live) and gnet's unread input. The copies gnet's Peek and each
// append leave behind are garbage, not counted: the budget bounds the live
// heap a client controls, which is what the collector cannot free.
//
// The first MaxHeaderBytes of it are free, as nginx gives each request a
// buffer in memory before it spools (client_body_buffer_size): a request
// that fits them (a head, a small body) is never refused, however full the
// budget, so hostile clients that fill it deny the large bodies, not every
// request. What that leaves unbounded is bounded per connection already
// (the header limit), as before.
func (l *loop) holding(cl *client) int64 {
	if cl.gone {
		return 0
	}
	return max(0, int64(cap(cl.chunks.msg)+cl.c.InboundBuffered()-l.s.o.MaxHeaderBytes))
}

// settle charges cl what it holds now, passing the limit if it must: after
// a shrink (a request handed on, refused, a connection closed) it never
// does, and what a serve outside a read (advance, adminCall) may hold more
// is input already read.
func (l *loop) settle(cl *client) {
	b := &l.s.budget
	n := l.holding(cl)
	b.held.Add(n - cl.charged)
	cl.charged = n
}

// hold charges cl what it holds after a read, or refuses it when that
// would pass the budget: a client reading a request gets 503 and is closed
// (by lingering, as after a 413), its held bytes dropped. One that is busy
// or waits for its answer to leave, and has read ahead past the budget,
// has what it read ahead dropped (the requests in it go unanswered) and
// gets the answer it waits for, then the connection's end (lingering,
// dropping what comes meanwhile): closed at once, it lost an answer the
// upstream had worked for. Only growth is refused, so a connection already
// charged keeps what it holds.
func (l *loop) hold(cl *client) gnet.Action {
	if l.s.budget.move(&cl.charged, l.holding(cl)) {
		return gnet.None
	}
	l.s.refused(cl)
	if !cl.busy && !cl.paused && !cl.closing {
		l.reject(cl, proxy.ErrBusy) // drops what it holds and settles
		return gnet.None
	}
	cl.chunks = chunked{}
	_, _ = cl.c.Discard(cl.c.InboundBuffered())
	cl.close, cl.linger = true, true // busy: its answer says so, and reply lingers; traffic drops what comes until then
	if !cl.busy && !cl.closing {
		// Paused: its answer is written (waiting in gnet's buffer); it
		// lingers from now, and the sweep sends the FIN once the answer
		// has left.
		cl.closing, cl.paused, cl.lingerSince = true, false, l.now
		l.count(cl)
		l.fin(cl)
	}
	l.settle(cl)
	return gnet.None
}

// refused counts a refusal and logs it at WARN, once per proxy.RefusalWarnEvery.
func (s *Server) refused(cl *client) {
	b := &s.budget
	b.refused.Note(s.o.Log, "request refused: the event loops hold their budget of request bytes",
		"peer", cl.peer.String(), "held_bytes", b.held.Load(), "budget_bytes", b.limit, "env", "GATEWAY_LOOP_HELD_BYTES")
}

// instrument publishes the budget and the cap on client connections: the
// bytes held and the connections open (gauges) and the refusals of each
// (counters), read at collection time. The cap's two are the fasthttp
// transport's instruments (proxy.ExportClientConns): one transport runs at
// a time, and one graph and alert read either. unregister removes them all;
// Serve calls it on return: a process that lives on (cmd/shanhai restarting
// the gateway, tests) must not keep reporting, and holding, a stopped
// server's budget beside the next one's.
func (s *Server) instrument(mp metric.MeterProvider) (unregister func(), err error) {
	clients, err := proxy.ExportClientConns(mp, s.conns.Load, &s.connsRefused)
	if err != nil {
		return nil, fmt.Errorf("evloop: %w", err)
	}
	budget, err := s.instrumentBudget(mp)
	if err != nil {
		_ = clients.Unregister()
		return nil, err
	}
	return func() {
		_ = clients.Unregister()
		_ = budget.Unregister()
	}, nil
}

// instrumentBudget publishes the budget's gauge and refusals counter.
func (s *Server) instrumentBudget(mp metric.MeterProvider) (metric.Registration, error) {
	m := mp.Meter("github.com/shanhai-dev/shanhai/gateway/internal/evloop")
	held, err := m.Int64ObservableGauge("shanhai.gateway.loop.held", metric.WithUnit("By"),
		metric.WithDescription("Bytes the event loops hold for requests not yet handed upstream (GATEWAY_LOOP_HELD_BYTES bounds them)"))
	if err != nil {
		return nil, fmt.Errorf("evloop: held bytes gauge: %w", err)
	}
	refusals, err := m.Int64ObservableCounter("shanhai.gateway.loop.held.refusals", metric.WithUnit("{connection}"),
		metric.WithDescription("Requests refused 503 (or connections closed) because the event loops hold their budget of request bytes"))
	if err != nil {
		return nil, fmt.Errorf("evloop: held bytes refusals counter: %w", err)
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(held, s.budget.held.Load())
		o.ObserveInt64(refusals, s.budget.refused.Load())
		return nil
	}, held, refusals)
	if err != nil {
		return nil, fmt.Errorf("evloop: held bytes callback: %w", err)
	}
	return reg, nil
}
