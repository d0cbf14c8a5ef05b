package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel"

	"github.com/shanhai-dev/shanhai/gateway/internal/authn"
	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/retry"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// With mayBlock false the chain stops before a limiter that cannot decide
// locally, and resumes there: the request is limited once, not twice.
func TestBeginBlocksAndResumes(t *testing.T) {
	up := startUpstream(t)
	lim := &countingDeny{}
	p, _ := newTestProxy(t, Options{IPLimit: lim}, up)
	var req fasthttp.Request
	var resp fasthttp.Response
	_ = req.Read(bufioReader("GET /api/v1/orders/1 HTTP/1.1\r\nHost: gw\r\n\r\n"))
	x := NewExchange(&req, &resp, netip.MustParseAddr("203.0.113.5"), nil)
	defer x.Release()
	if s := p.Begin(x, false); s != Blocked {
		t.Fatalf("Begin(no block) = %v, want Blocked", s)
	}
	if lim.calls != 0 {
		t.Fatalf("limiter called %d times before blocking", lim.calls)
	}
	if s := p.Begin(x, true); s != Done || resp.StatusCode() != 429 {
		t.Fatalf("resumed: step %v status %d, want Done 429", s, resp.StatusCode())
	}
	p.Finish(x)
	if lim.calls != 1 || up.hits.Load() != 0 {
		t.Fatalf("limiter calls %d, upstream hits %d; want 1 and 0", lim.calls, up.hits.Load())
	}
}

type countingDeny struct {
	denyAll
	calls int
}

func (c *countingDeny) Allow(ctx context.Context, key []byte) (quota.Decision, error) {
	c.calls++
	return c.denyAll.Allow(ctx, key)
}

// BenchmarkChain is one request through the phases as the event loop drives
// them (Begin without blocking, the upstream's answer handed to Received,
// Finish), with no network in between: what the chain itself costs per
// request, and what it allocates. "routing" is GATEWAY_MODE=routing's
// Options; "full" is run.go's full chain: leases on real Redis (set high),
// a verified token answered from pkg/auth's cache, breaker, adaptive limit,
// retry budget, tracing at a 10% ratio through telemetry.Setup (no exporter:
// exporting sampled spans is pkg/telemetry's part), metrics. The difference
// between the two is the chain's cost over routing.
func BenchmarkChain(b *testing.B) {
	full, raw := chainSetup(b, "0.1")
	for _, c := range []struct {
		name string
		o    Options
		full bool
	}{{"routing", Options{}, false}, {"full", full, true}} {
		b.Run(c.name, func(b *testing.B) {
			once := chainClient(b, chainProxy(b, c.name, c.o, c.full), raw)
			once() // leases, token cache, series
			b.ReportAllocs()
			for b.Loop() {
				once()
			}
		})
		// Both cores at once, as the gateway's two event loops run: what
		// the shared atomics and locks (leases, budget, limits, breaker
		// window, counters, histograms) add when their cache lines move
		// between cores.
		b.Run(c.name+"-parallel", func(b *testing.B) {
			p := chainProxy(b, c.name+"-parallel", c.o, c.full)
			chainClient(b, p, raw)()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				once := chainClient(b, p, raw)
				for pb.Next() {
					once()
				}
			})
		})
	}
}

// chainSetup is BenchmarkChain's full chain: tracing through telemetry.Setup
// at parentbased_traceidratio ratio (no exporter), a verified token from
// pkg/auth's cache, leases on real Redis (set high), metrics; raw is a
// request for it.
func chainSetup(tb testing.TB, ratio string) (full Options, raw string) {
	tb.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	tb.Setenv("OTEL_TRACES_SAMPLER_ARG", ratio)
	tb.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	prevTP, prevMP := otel.GetTracerProvider(), otel.GetMeterProvider()
	tp, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "gateway-bench"})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
	})

	key, _ := auth.GenerateKey()
	signer := auth.NewSigner(key)
	ver, err := auth.NewStaticVerifier(signer.JWKS(), auth.VerifierOptions{CacheEntries: 1 << 16})
	if err != nil {
		tb.Fatal(err)
	}
	tok, _ := signer.Sign("user-1", time.Hour)

	rdb := redisClient(tb)
	tb.Cleanup(func() { _ = rdb.Close() })
	high := quota.Rate{Count: 10_000_000, Period: time.Second}
	ns := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	full = Options{
		Auth:    authn.Verifier{V: ver},
		IPLimit: quota.New(rdb, ns+":ip", high, 1, slog.Default()), UserLimit: quota.New(rdb, ns+":user", high, 1, slog.Default()),
		LoginLimit: quota.New(rdb, ns+":login", quota.Rate{Count: 10, Period: time.Minute, Burst: 5}, 1, slog.Default()),
		Tracing:    true, Metrics: true,
	}
	return full, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + tok + "\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n"
}

// chainProxy is a Proxy of o over an upstream that is never dialled; full
// adds run.go's breaker, adaptive limit and retry budget.
func chainProxy(b testing.TB, name string, o Options, full bool) *Proxy {
	p, pool := newTestProxy(b, o, &fakeUpstream{addr: "127.0.0.1:1"})
	if full {
		svc := pool.Service("order")
		svc.Breaker = breaker.New("bench-"+name, breaker.Settings{})
		svc.Limit = limit.NewAdaptive(limit.AdaptiveOptions{Initial: 100, Max: 1000})
		svc.Budget = retry.NewBudget(0.2, 3, 10*time.Second)
	}
	return p
}

// chainClient returns one request of raw through p's phases, with a made-up
// upstream answer; each client has its own request and response, as each
// connection on an event loop has.
func chainClient(b testing.TB, p *Proxy, raw string) func() {
	var src, req fasthttp.Request
	var resp fasthttp.Response
	_ = src.Read(bufioReader(raw))
	peer := netip.MustParseAddr("203.0.113.5")
	return func() {
		src.CopyTo(&req)
		resp.Reset()
		x := NewExchange(&req, &resp, peer, nil)
		s := p.Begin(x, false)
		if s == Blocked { // a lease to take from Redis, or a token to verify
			s = p.Begin(x, true)
		}
		for s == Send {
			resp.SetStatusCode(200)
			resp.SetBodyString(`{"ok":true}`)
			s = p.Received(x, nil)
		}
		p.Finish(x)
		x.Release()
		if resp.StatusCode() != 200 {
			b.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
		}
	}
}

// redisClient connects to the test Redis (pkg/testenv: fails, never
// skips, when it is not up).
func redisClient(tb testing.TB) *redis.Client {
	tb.Helper()
	o, err := redis.ParseURL(testenv.Redis(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return redis.NewClient(o)
}

// TestChainUnsampledAllocs: a request the tracer does not sample goes
// through the full chain without allocating (its server span lives in the
// pooled Exchange), and the upstream still gets the traceparent Start's
// span would have given it: the caller's trace id, a span id of the
// gateway's own, flags 00, the caller's tracestate.
func TestChainUnsampledAllocs(t *testing.T) {
	full, raw := chainSetup(t, "0") // every root dropped too
	p := chainProxy(t, "unsampled", full, true)
	const parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	_ = req.Read(bufioReader(strings.Replace(raw, "\r\n\r\n", "\r\nTraceparent: "+parent+"\r\nTracestate: vendor=x\r\n\r\n", 1)))
	x := NewExchange(req, resp, netip.MustParseAddr("203.0.113.5"), nil)
	s := p.Begin(x, true)
	if s != Send {
		t.Fatalf("Begin: %v, status %d", s, resp.StatusCode())
	}
	tp, ts := string(req.Header.Peek("Traceparent")), string(req.Header.Peek("Tracestate"))
	if len(tp) != len(parent) || tp[:36] != parent[:36] || tp[36:52] == parent[36:52] || tp[52:] != "-00" || ts != "vendor=x" {
		t.Fatalf("upstream traceparent %q tracestate %q, want the trace of %q with a new span id, flags 00", tp, ts, parent)
	}
	resp.SetStatusCode(200)
	p.Received(x, nil)
	p.Finish(x)
	x.Release()

	if raceEnabled {
		return
	}
	once := chainClient(t, p, raw)
	once() // leases, token cache, series
	if n := testing.AllocsPerRun(200, once); n != 0 {
		t.Fatalf("%.2f allocations per unsampled request, want 0", n)
	}
}
