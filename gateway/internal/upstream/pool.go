package upstream

import (
	"context"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/shanhai-dev/shanhai/gateway/internal/sockio"
)

// Resolver lists a service's live instances (pkg/discovery's resolvers,
// adapted by the caller).
type Resolver interface {
	Instances(service string) []Instance
}

// ClientOptions tune the per-endpoint connection pools.
type ClientOptions struct {
	// MaxConns caps connections to one endpoint. Default 1024.
	MaxConns int
	// IdleTimeout closes pooled connections unused for this long; keep it
	// below the upstream's own idle timeout so the gateway, not the
	// upstream, closes idle connections (a POST on a connection the
	// upstream just closed cannot be retried safely). Default 30s.
	IdleTimeout time.Duration
	// ReadBufferSize bounds upstream response headers. Default 8 KiB.
	ReadBufferSize int
	// MaxResponseBodySize bounds upstream response bodies. Default 16 MiB.
	MaxResponseBodySize int
}

// Pool is the set of services the route table names, kept in step with
// discovery by Run.
type Pool struct {
	services map[string]*Service
	res      Resolver
	opts     ClientOptions

	mu      sync.Mutex
	clients map[string]*fasthttp.HostClient // by address, shared by services
	version atomic.Uint64                   // bumped after any service's endpoints change
	// newBreaker makes a version's breaker (SetBreakers); nil: each
	// service's Breaker decides for all its versions.
	newBreaker func(service, version string) Breaker
}

// SetBreakers gives each version of each service a breaker of its own,
// made by newBreaker when an instance of that version first appears (now,
// for the instances already known). One breaker per service counted the
// failures of every release against all of them: a dead canary (the only
// instance of its version, which ejection keeps in picking) refused the
// connections of the requests tagged for it, and those failures opened the
// breaker for the stable release too, whose instances were all up. Per
// version, a release's failures shut off that release alone; the chain
// sends a request of no particular version (no tag, no weights) to another
// version when the one picked is open, a weighted one only to a heavier
// release (a canary's share to the stable release), and refuses a tagged
// one.
// A version's breaker lives as long as the version has instances: when
// the last leaves discovery it is dropped, and closed if it has a Close
// method (pkg/breaker's stops reporting its state then). Kept instead, every
// release a gateway lived through stayed reported for its life, one
// breaker and one series more per deployment, a rolled-back canary's as
// half-open; a version that comes back is a new deployment and starts
// closed. CloseBreakers closes the rest.
func (p *Pool) SetBreakers(newBreaker func(service, version string) Breaker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.newBreaker = newBreaker
	for _, svc := range p.services {
		if sn := svc.snap.Load(); sn != nil {
			for _, e := range sn.all {
				p.attachBreaker(svc, e)
			}
		}
	}
}

// CloseBreakers closes (see SetBreakers) every version's breaker and makes
// no more: the instances a later Refresh finds have none, which is for a
// gateway that has stopped serving.
func (p *Pool) CloseBreakers() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.newBreaker = nil
	for _, svc := range p.services {
		for v, b := range svc.releases {
			closeBreaker(b.Breaker)
			delete(svc.releases, v)
		}
	}
}

// dropBreakers closes and forgets the breakers of svc's versions that have
// no instance in sn any more; p.mu is held.
func (p *Pool) dropBreakers(svc *Service, sn *snapshot) {
	for v, b := range svc.releases {
		if len(sn.byVersion[v]) == 0 {
			closeBreaker(b.Breaker)
			delete(svc.releases, v)
		}
	}
}

// closeBreaker closes b if it can be closed.
func closeBreaker(b Breaker) {
	if c, ok := b.(interface{ Close() }); ok {
		c.Close()
	}
}

// attachBreaker gives e its version's breaker, made on first need; p.mu
// is held.
func (p *Pool) attachBreaker(svc *Service, e *Endpoint) {
	if p.newBreaker == nil || e.release.Load() != nil {
		return
	}
	b := svc.releases[e.Version]
	if b == nil {
		b = &releaseBreaker{p.newBreaker(svc.Name, e.Version)}
		if svc.releases == nil {
			svc.releases = map[string]*releaseBreaker{}
		}
		svc.releases[e.Version] = b
	}
	e.release.Store(b)
}

// Version changes whenever some service's set of endpoints has changed, so
// a holder of per-address state (the event loop's connections) need call
// Has only then.
func (p *Pool) Version() uint64 { return p.version.Load() }

// Has reports whether addr is an endpoint of some service.
func (p *Pool) Has(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clients[addr] != nil
}

// NewPool creates services for names; their breakers and limits are set by
// the caller before traffic starts.
func NewPool(res Resolver, names []string, o ClientOptions) *Pool {
	if o.MaxConns == 0 {
		o.MaxConns = 1024
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 30 * time.Second
	}
	if o.ReadBufferSize == 0 {
		o.ReadBufferSize = 8 << 10
	}
	if o.MaxResponseBodySize == 0 {
		o.MaxResponseBodySize = 16 << 20
	}
	p := &Pool{services: map[string]*Service{}, res: res, opts: o, clients: map[string]*fasthttp.HostClient{}}
	for _, n := range names {
		p.services[n] = &Service{Name: n}
	}
	p.Refresh()
	return p
}

// Service returns the named service, or nil.
func (p *Pool) Service(name string) *Service { return p.services[name] }

// Services lists every service.
func (p *Pool) Services() []*Service {
	out := make([]*Service, 0, len(p.services))
	for _, s := range p.services {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run refreshes from the resolver every interval until ctx ends. The
// resolver itself is a watch with a local cache, so polling it is cheap;
// an interval of 100ms keeps the "changes within a second" promise with
// room to spare.
func (p *Pool) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.Refresh()
		}
	}
}

// Refresh rebuilds every service's endpoint set whose instances changed.
func (p *Pool) Refresh() {
	p.mu.Lock()
	defer p.mu.Unlock()
	used := map[string]bool{}
	changed := false
	for name, svc := range p.services {
		ins := p.res.Instances(name)
		sort.Slice(ins, func(i, j int) bool { return ins[i].ID+ins[i].Addr < ins[j].ID+ins[j].Addr })
		var kb strings.Builder
		for _, in := range ins {
			kb.WriteString(in.ID + "|" + in.Addr + "|" + in.Version + ";")
			used[in.Addr] = true
		}
		key := kb.String()
		if old := svc.snap.Load(); old != nil && old.key == key {
			continue
		}
		old := map[string]*Endpoint{}
		if sn := svc.snap.Load(); sn != nil {
			for _, e := range sn.all {
				old[e.ID+"|"+e.Addr] = e
			}
		}
		sn := &snapshot{byVersion: map[string][]*Endpoint{}, key: key}
		for _, in := range ins {
			e := old[in.ID+"|"+in.Addr]
			if e == nil || e.Version != in.Version {
				e = &Endpoint{Instance: in, Client: p.client(in.Addr)}
			}
			p.attachBreaker(svc, e)
			sn.all = append(sn.all, e)
			sn.byVersion[in.Version] = append(sn.byVersion[in.Version], e)
		}
		svc.snap.Store(sn)
		p.dropBreakers(svc, sn)
		changed = true
	}
	for addr, c := range p.clients {
		if !used[addr] {
			c.CloseIdleConnections()
			delete(p.clients, addr)
		}
	}
	if changed {
		p.version.Add(1)
	}
}

// dial connects like fasthttp's default dialer and switches the connection
// to sockio's raw read/write path in exchange mode: an HTTP/1.1 upstream
// only answers, so the request is sent by the Read that waits for the
// response, without a speculative read(2) first (see sockio).
//
// A timeout of 0 is none given, as for fasthttp's own dialer: HostClient
// passes it when it dials for a request waiting on MaxConns after a busy
// connection closed (dialConnFor). Taken as a deadline already over, that
// dial failed at once and the waiting request with it (502), though the
// upstream was up; fasthttp.Dial bounds it by fasthttp.DefaultDialTimeout,
// and the waiting request's own deadline still bounds its wait.
func dial(addr string, timeout time.Duration) (net.Conn, error) {
	var (
		c   net.Conn
		err error
	)
	if timeout > 0 {
		c, err = fasthttp.DialTimeout(addr, timeout)
	} else {
		c, err = fasthttp.Dial(addr)
	}
	if err != nil {
		return nil, err
	}
	return sockio.WrapExchange(c), nil
}

// maxConnWait caps how long a request waits for a free connection. Every
// request the chain sends has a deadline (its route's timeout, or less),
// which bounds the wait first; this only keeps a wait from being endless.
const maxConnWait = time.Hour

// client returns the pool for addr; p.mu is held.
func (p *Pool) client(addr string) *fasthttp.HostClient {
	if c := p.clients[addr]; c != nil {
		return c
	}
	c := &fasthttp.HostClient{
		Addr:                          addr,
		DialTimeout:                   dial,
		MaxConns:                      p.opts.MaxConns,
		MaxIdleConnDuration:           p.opts.IdleTimeout,
		ReadBufferSize:                p.opts.ReadBufferSize,
		MaxResponseBodySize:           p.opts.MaxResponseBodySize,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		// A request that finds all MaxConns busy waits for one, as on the
		// event loop, whose requests queue for their pool; the request's
		// own deadline bounds the wait (AcquireConn takes the shorter), and
		// running out is the 504 any late answer gets. Without it fasthttp
		// refused at once (ErrNoFreeConns): a 502 "did not answer" from an
		// upstream that never saw the request, counted as its failure by
		// the breaker and the adaptive limit.
		MaxConnWaitTimeout: maxConnWait,
		// The idle connection last used goes first, as on the event loop
		// and in Go's Transport. fasthttp's default (FIFO) hands out the
		// one idle longest, the likeliest to meet the upstream's keep-alive
		// idle timeout as the request arrives (a resend, or a 502 for a
		// POST), and keeps every connection in rotation, so that the pool
		// never shrinks by IdleTimeout after a burst. The cleaner still
		// finds the oldest at the front: connections go back at the end.
		ConnPoolStrategy: fasthttp.LIFO,
		// Retries are the gateway's decision (idempotency rule + budget);
		// the pool must never resend on its own.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },
		// transport fails a malformed answer at once. It is fasthttp's own
		// less what this literal does not set (answer.go): setting
		// StreamResponseBody, ReadTimeout, WriteTimeout or MaxConnDuration
		// here needs it extended first, or a streamed body would be read
		// from a reader already released.
		Transport: transport{},
	}
	p.clients[addr] = c
	return c
}
