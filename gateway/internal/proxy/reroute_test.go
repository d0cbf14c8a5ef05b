package proxy

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/canary"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// outcomes is a breaker that admits every call and records what it was
// told.
type outcomes struct {
	mu  sync.Mutex
	got map[breaker.Outcome]int
}

func (b *outcomes) Admit() (func(breaker.Outcome), error) {
	return func(o breaker.Outcome) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.got == nil {
			b.got = map[breaker.Outcome]int{}
		}
		b.got[o]++
	}, nil
}

func (b *outcomes) count(o breaker.Outcome) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got[o]
}

const postOrder = "POST /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nContent-Length: 2\r\n\r\n{}"

// A connection one instance refuses (killed, still listed in discovery)
// ejects it and sends the request, a POST too (nothing reached the dead
// one), to another instance; the breaker hears no failure of the service.
// Counted as one, the dead instance opened the breaker for the live ones.
func TestRefusedConnectEjectsTheInstanceNotTheService(t *testing.T) {
	live := startUpstream(t)
	dead := &fakeUpstream{addr: testenv.ClosedPort(t)}
	p, pool := newTestProxy(t, Options{Auth: fakeAuth{}, MaxAttempts: 2, Metrics: true}, live, dead)
	br := &outcomes{}
	pool.Service("order").Breaker = br
	const n = 40
	for i := range n {
		if ctx := serve(p, postOrder); ctx.Response.StatusCode() != 200 {
			t.Fatalf("request %d: %d %s", i, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	if got := live.hits.Load(); got != n {
		t.Fatalf("live instance got %d of %d requests", got, n)
	}
	if f := br.count(breaker.Failure); f != 0 {
		t.Fatalf("breaker told of %d failures; the service answered every request", f)
	}
	ej := p.metrics.counter(countKey{ejections: true, a: "order"}).n.Load()
	if ej < 1 || int(ej) != br.count(breaker.Ignored) {
		t.Fatalf("ejections %d, attempts left out of the breaker %d: want the same, at least 1", ej, br.count(breaker.Ignored))
	}
}

// The only instance of the service is never ejected: its refusals are the
// service's failures, and the breaker decides.
func TestRefusedConnectOfTheOnlyInstanceIsAFailure(t *testing.T) {
	dead := &fakeUpstream{addr: testenv.ClosedPort(t)}
	p, pool := newTestProxy(t, Options{Auth: fakeAuth{}, MaxAttempts: 2, Metrics: true}, dead)
	br := &outcomes{}
	pool.Service("order").Breaker = br
	if ctx := serve(p, postOrder); ctx.Response.StatusCode() != 502 {
		t.Fatalf("status %d, want 502", ctx.Response.StatusCode())
	}
	if f := br.count(breaker.Failure); f != 1 {
		t.Fatalf("breaker failures %d, want 1", f)
	}
	if ej := p.metrics.counter(countKey{ejections: true, a: "order"}).n.Load(); ej != 0 {
		t.Fatalf("the only instance ejected %d times", ej)
	}
}

// Breakers are per version (Pool.SetBreakers): a dead canary, the only
// instance of v2, opens v2's breaker with the failures of the requests
// tagged for it, and the stable release keeps answering. A request of no
// particular version whose pick lands on the open release goes to another
// release instead of a 503: with no weights, P2C sends it to any instance.
func TestOpenReleaseBreakerLeavesTheOtherReleases(t *testing.T) {
	o, made := stableAndDeadCanary(t)
	p := New(o)
	const get = "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\n"
	for range 10 {
		serve(p, get+"X-Release-Tag: v2\r\n\r\n")
	}
	if made["v2"].State() != breaker.Open {
		t.Fatalf("v2's breaker %v after 10 refused connections, want open", made["v2"].State())
	}
	ctx := serve(p, get+"X-Release-Tag: v2\r\n\r\n")
	if body := string(ctx.Response.Body()); ctx.Response.StatusCode() != 503 || !strings.Contains(body, `release \"v2\"`) {
		t.Fatalf("tagged v2: %d %s, want 503 naming the release", ctx.Response.StatusCode(), body)
	}
	for i := range 40 {
		for _, h := range []string{"X-Release-Tag: v1\r\n", ""} {
			if ctx := serve(p, get+h+"\r\n"); ctx.Response.StatusCode() != 200 {
				t.Fatalf("request %d %q with v1 up: %d %s", i, h, ctx.Response.StatusCode(), ctx.Response.Body())
			}
		}
	}
	if s := made["v1"].State(); s != breaker.Closed {
		t.Fatalf("v1's breaker %v", s)
	}
}

// stableAndDeadCanary is the chain's options for /api/v1/orders to a live
// v1 and a dead v2 (its port closed), one attempt per request, with a
// breaker per release (made, by version).
func stableAndDeadCanary(t *testing.T) (Options, map[string]*breaker.Breaker) {
	live := startUpstream(t)
	dead := testenv.ClosedPort(t)
	pool := upstream.NewPool(staticRes{"order": {
		{ID: "stable", Addr: live.addr, Version: "v1"}, {ID: "canary", Addr: dead, Version: "v2"},
	}}, []string{"order"}, upstream.ClientOptions{})
	made := map[string]*breaker.Breaker{}
	pool.SetBreakers(func(service, version string) upstream.Breaker {
		b := breaker.New(service+"@"+version, breaker.Settings{MinRequests: 5, FailureRatio: 0.5, OpenBase: time.Minute})
		t.Cleanup(b.Close)
		made[version] = b
		return b
	})
	tb, err := route.Parse("/api/v1/orders=order", time.Second, route.DefaultPublic)
	if err != nil {
		t.Fatal(err)
	}
	return Options{Auth: fakeAuth{}, MaxAttempts: 1, Table: tb, Upstreams: pool}, made
}

// closable is a breaker that always admits and counts its Closes.
type closable struct{ closes int }

func (c *closable) Admit() (func(breaker.Outcome), error) { return func(breaker.Outcome) {}, nil }
func (c *closable) Close()                                { c.closes++ }

// A release whose last instance left discovery takes its breaker along: a
// breaker reports its state (shanhai.breaker.state) until closed, and they
// were kept for every version the pool ever saw. Each release a gateway
// lived through stayed on /metrics for its life, one series and one breaker
// more per deployment, and a rolled-back canary whose breaker was open went
// on showing "order@v2" half-open. One that comes back is a new deployment
// and starts closed.
func TestBreakerOfAReleaseThatLeftIsClosed(t *testing.T) {
	stable := upstream.Instance{ID: "stable", Addr: "127.0.0.1:1", Version: "v1"}
	canary := upstream.Instance{ID: "canary", Addr: "127.0.0.1:2", Version: "v2"}
	res := staticRes{"order": {stable, canary}}
	pool := upstream.NewPool(res, []string{"order"}, upstream.ClientOptions{})
	made := map[string][]*closable{}
	pool.SetBreakers(func(service, version string) upstream.Breaker {
		b := &closable{}
		made[version] = append(made[version], b)
		return b
	})
	res["order"] = []upstream.Instance{stable}
	pool.Refresh()
	if c := made["v2"][0].closes; c != 1 {
		t.Fatalf("v2's breaker closed %d times after v2 left discovery, want 1", c)
	}
	if c := made["v1"][0].closes; c != 0 {
		t.Fatalf("v1's breaker closed %d times while v1 is up", c)
	}
	res["order"] = []upstream.Instance{stable, canary}
	pool.Refresh()
	if len(made["v2"]) != 2 {
		t.Fatalf("v2 came back: %d breakers made for it, want a new one", len(made["v2"]))
	}
	ep, err := pool.Service("order").Pick("v2", nil)
	if err != nil || pool.Service("order").BreakerFor(ep) != made["v2"][1] {
		t.Fatalf("v2's instance decided by %v (%v), want its new breaker", pool.Service("order").BreakerFor(ep), err)
	}
	// A gateway that stops closes the rest, each once, and makes no more.
	pool.CloseBreakers()
	for v, bs := range made {
		for i, b := range bs {
			if b.closes != 1 {
				t.Errorf("%s's breaker %d closed %d times, want once", v, i, b.closes)
			}
		}
	}
	res["order"] = []upstream.Instance{stable, {ID: "next", Addr: "127.0.0.1:3", Version: "v3"}}
	pool.Refresh()
	if len(made["v3"]) != 0 {
		t.Fatal("a breaker made after CloseBreakers")
	}
}

// A weighted request (no tag) that drew a release whose breaker is open
// moves to the heaviest release outweighing it, when that one admits it: a
// canary's share goes to the stable release, which has the capacity. It got
// the 503 before. The other way it still does: the stable share moved onto
// a canary sized for a fraction of it would overload the canary.
func TestWeightedRequestMovesFromAnOpenCanaryToStable(t *testing.T) {
	o, made := stableAndDeadCanary(t)
	var weights atomic.Pointer[canary.Weights]
	o.Dynamic = func() Dynamic { return Dynamic{Canary: map[string]canary.Weights{"order": *weights.Load()}} }
	p := New(o)
	const get = "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\n"
	weights.Store(&canary.Weights{"v1": 2, "v2": 1})
	for range 10 {
		serve(p, get+"X-Release-Tag: v2\r\n\r\n")
	}
	if made["v2"].State() != breaker.Open {
		t.Fatalf("v2's breaker %v after 10 refused connections, want open", made["v2"].State())
	}
	// A third draw the canary: (2/3)^40 that none of 40 does.
	for i := range 40 {
		if ctx := serve(p, get+"\r\n"); ctx.Response.StatusCode() != 200 {
			t.Fatalf("weighted request %d with v2 open and v1 up: %d %s, want it moved to v1", i, ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
	// v2 now the heavier: its share is not moved onto v1.
	weights.Store(&canary.Weights{"v1": 1, "v2": 2})
	refused := 0
	for range 40 {
		ctx := serve(p, get+"\r\n")
		switch body := string(ctx.Response.Body()); {
		case ctx.Response.StatusCode() == 503 && strings.Contains(body, `release \"v2\"`):
			refused++
		case ctx.Response.StatusCode() != 200:
			t.Fatalf("weighted request: %d %s", ctx.Response.StatusCode(), body)
		}
	}
	if refused == 0 {
		t.Fatal("no request drawn to the open, heavier v2 was refused: its share went to the lighter v1")
	}
}
