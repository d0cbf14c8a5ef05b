// Package proxy is the gateway's forwarding engine: a fasthttp handler that
// cleans and routes the request, applies CORS, limits, authentication,
// canary selection, breaker, adaptive concurrency, deadline and retries, and
// forwards over pooled keep-alive connections.
//
// Why fasthttp and not net/http: on this 2-core machine the stdlib
// httputil.ReverseProxy reached 0.34-0.48x nginx proxy_pass's requests/s and
// spent 3.5x the CPU per request of this handler with the full chain (117 vs
// 33 us; gateway/bench/README.md has the command and the tables); a tuned
// net/http server alone allocates a Request, header maps and a response
// writer per request. fasthttp reuses all of them, and its HostClient is a plain
// HTTP/1.1 keep-alive pool, which is all an internal upstream hop needs. The
// request is forwarded in place (no copy of headers or body), which is why
// the handler edits ctx.Request directly.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/authn"
	"github.com/shanhai-dev/shanhai/gateway/internal/canary"
	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// TimeoutHeader carries the caller's remaining time in milliseconds
// (pkg/deadline's header): read from clients, written to upstreams.
const TimeoutHeader = "X-Request-Timeout-Ms"

// Limiter decides one request of a key (quota.Lease satisfies it).
type Limiter interface {
	Allow(ctx context.Context, key []byte) (quota.Decision, error)
}

// Authenticator maps a bearer token to a user id (authn.Verifier satisfies it).
type Authenticator interface {
	Subject(ctx context.Context, token []byte) (string, error)
}

// Dynamic is what may change at run time without a restart.
type Dynamic struct {
	// Canary weights per service.
	Canary map[string]canary.Weights
	// Timeouts per route name, overriding the table's.
	Timeouts map[string]time.Duration
}

// ErrorHandler answers what the server rejects before the handler runs:
// oversized bodies (413), slow or malformed requests.
func ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	var tooLarge bool
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		tooLarge = true
	}
	var netErr net.Error
	var small *fasthttp.ErrSmallBuffer
	switch {
	case tooLarge:
		writeProblem(ctx, fasthttp.StatusRequestEntityTooLarge, "body-too-large", "the request body exceeds the gateway's limit")
	case errors.As(err, &small):
		writeProblem(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, "headers-too-large", "the request line and headers exceed the gateway's limit")
	case errors.As(err, &netErr) && netErr.Timeout():
		writeProblem(ctx, fasthttp.StatusRequestTimeout, "request-timeout", "the request was not received in time")
	default:
		writeProblem(ctx, fasthttp.StatusBadRequest, "malformed-request", "the request could not be parsed")
	}
	ctx.SetConnectionClose()
}

// Options assemble a Proxy. Nil parts are switched off, which is how the
// "routing only" benchmark variant is built.
type Options struct {
	Table      *route.Table
	Upstreams  *upstream.Pool
	Auth       Authenticator
	IPLimit    Limiter
	LoginLimit Limiter // POST on the sessions route (log in, refresh)
	UserLimit  Limiter
	// MaxAttempts per request including the first (retries only for
	// idempotent requests). Default 2.
	MaxAttempts int
	// MaxTimeout caps a client's X-Request-Timeout-Ms. Default 30s.
	MaxTimeout time.Duration
	Trusted    Trusted
	CORS       *CORS
	Dynamic    func() Dynamic
	Tracing    bool
	Metrics    bool
	TLS        bool
	Log        *slog.Logger
}

// Proxy is the gateway's request handler.
type Proxy struct {
	o       Options
	tracer  trace.Tracer
	server  *telemetry.ServerTracer // server spans: unsampled requests skip the SDK
	metrics *metrics
}

// New builds a Proxy.
func New(o Options) *Proxy {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 2
	}
	if o.MaxTimeout == 0 {
		o.MaxTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Dynamic == nil {
		o.Dynamic = func() Dynamic { return Dynamic{} }
	}
	p := &Proxy{o: o}
	if o.Tracing {
		p.tracer = otel.Tracer(instrumentation)
		p.server = telemetry.NewServerTracer(otel.GetTracerProvider(), instrumentation)
	}
	if o.Metrics {
		p.metrics = newMetrics()
	}
	return p
}

// Span options are built once: passing fresh ones allocates an option value
// and a variadic slice on every request (seen in the allocation profile).
var (
	serverSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}
	clientSpan = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
)

// state is per-request scratch space, pooled.
type state struct {
	path, uri, key, rid, tp, xff, num, hdr []byte
	// Response decorations, written last because an upstream call resets
	// the response.
	rl        quota.Decision
	rlSet     bool
	origin    []byte
	originAll bool // "*" rather than the echoed origin
	cors      bool
	// mctx is the context metric calls get: the request's while its trace
	// is sampled, so that histograms keep exemplars pointing at it, and
	// Background otherwise. The SDK's trace-based exemplar filter looks the
	// span up in the context on every measurement; on Background that
	// lookup ends at once (it was about 3% of the gateway's CPU).
	mctx context.Context
}

var states = sync.Pool{New: func() any {
	return &state{path: make([]byte, 0, 128), uri: make([]byte, 0, 256), key: make([]byte, 0, 64),
		rid: make([]byte, 0, 64), origin: make([]byte, 0, 64), hdr: make([]byte, 0, 64), tp: make([]byte, 0, 64), xff: make([]byte, 0, 64), num: make([]byte, 0, 16)}
}}

// Handle serves one request.
func (p *Proxy) Handle(ctx *fasthttp.RequestCtx) {
	st := states.Get().(*state)
	st.rlSet, st.cors, st.mctx = false, false, context.Background()
	defer func() {
		st.mctx = nil // do not keep the request's context alive in the pool
		states.Put(st)
	}()
	start := time.Now()
	h := &ctx.Request.Header
	method := methodIndex(h.Method())
	routeName := "unmatched"

	// Request id first, so even a 400 can be correlated.
	if id := h.Peek(RequestIDHeader); validRequestID(id) {
		st.rid = append(st.rid[:0], id...)
	} else {
		st.rid = appendRequestID(st.rid[:0])
		h.SetBytesV(RequestIDHeader, st.rid)
	}

	var span trace.Span
	reqCtx := context.Context(ctx)
	defer func() {
		p.decorate(ctx, st)
		if span != nil {
			status := ctx.Response.StatusCode()
			if span.IsRecording() {
				span.SetAttributes(attribute.Int("http.response.status_code", status))
				if status >= 500 {
					span.SetStatus(codes.Error, "")
				}
			}
			span.End()
		}
		if p.metrics != nil {
			p.metrics.request(st.mctx, routeName, method, ctx.Response.StatusCode(), time.Since(start))
		}
	}()

	// Canonical path: routing, the public check and the upstream all see
	// the same form.
	raw := h.RequestURI()
	pathPart, query := raw, []byte(nil)
	for i, c := range raw {
		if c == '?' {
			pathPart, query = raw[:i], raw[i:]
			break
		}
	}
	clean, err := route.Clean(st.path[:0], pathPart)
	st.path = clean
	if err != nil {
		writeProblem(ctx, fasthttp.StatusBadRequest, "bad-path", "the request path is malformed")
		return
	}
	if string(clean) != string(pathPart) {
		st.uri = append(append(st.uri[:0], clean...), query...)
		h.SetRequestURIBytes(st.uri)
	}

	if p.o.CORS != nil && p.o.CORS.handle(ctx, st) {
		return
	}

	rt, ok := p.o.Table.Match(clean)
	if !ok {
		writeProblem(ctx, fasthttp.StatusNotFound, "no-route", "no route for this path")
		return
	}
	routeName = rt.Name

	if p.tracer != nil {
		reqCtx, span = p.server.Start(context.Background(), remoteParent(h), rt.Name, serverSpan...)
		if span.SpanContext().IsSampled() {
			st.mctx = reqCtx
		}
		if span.IsRecording() {
			span.SetAttributes(attribute.String("http.request.method", methods[method]),
				attribute.String("http.route", rt.Prefix), attribute.String("url.path", string(clean)))
		}
	}

	peer := remoteAddr(ctx)
	client := p.o.Trusted.ClientIP(peer, h.Peek("X-Forwarded-For"))
	st.key = client.AppendTo(st.key[:0])
	lim, limName := p.o.IPLimit, "ip"
	if p.o.LoginLimit != nil && isLogin(ctx.Method(), clean) {
		lim, limName = p.o.LoginLimit, "login"
	}
	if lim != nil && !p.allow(ctx, reqCtx, st, lim, limName, st.key) {
		return
	}

	// Strip what clients must never control before deciding anything else.
	Sanitize(h)
	public := p.o.Table.IsPublic(ctx.Method(), clean)
	if p.o.Auth != nil {
		token := authn.Bearer(h.Peek("Authorization"))
		user, err := p.o.Auth.Subject(reqCtx, token)
		switch {
		case err == nil:
			h.Set(UserHeader, user)
			if p.o.UserLimit != nil {
				st.key = append(st.key[:0], user...)
				if !p.allow(ctx, reqCtx, st, p.o.UserLimit, "user", st.key) {
					return
				}
			}
		case public:
			// A public call with a bad token goes on anonymously.
		case errors.Is(err, authn.ErrNoToken):
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="shanhai"`)
			writeProblem(ctx, fasthttp.StatusUnauthorized, "unauthenticated", "this route needs a bearer token")
			return
		default:
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="shanhai", error="invalid_token"`)
			writeProblem(ctx, fasthttp.StatusUnauthorized, "invalid-token", "the bearer token is invalid or expired")
			return
		}
	}
	st.xff = p.o.Trusted.SetForwarded(h, peer, p.o.TLS, st.xff)

	p.forward(ctx, reqCtx, rt, method, start, st)
}

func isLogin(method, path []byte) bool {
	return string(method) == "POST" && (string(path) == "/api/v1/sessions" || string(path) == "/api/v1/sessions/refresh")
}

func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr()
	}
	return netip.Addr{}
}

// allow applies one limiter; on refusal it has answered 429.
func (p *Proxy) allow(ctx *fasthttp.RequestCtx, reqCtx context.Context, st *state, l Limiter, name string, key []byte) bool {
	d, err := l.Allow(reqCtx, key)
	if err != nil {
		// Only a cancelled request errors; there is nobody to answer.
		writeProblem(ctx, fasthttp.StatusServiceUnavailable, "limit-unavailable", "rate limit could not be evaluated")
		return false
	}
	if p.metrics != nil {
		p.metrics.decision(name, d.Allowed)
	}
	if d.Limit > 0 {
		st.rl, st.rlSet = d, true
	}
	if d.Allowed {
		return true
	}
	ctx.Response.Header.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
	writeProblem(ctx, fasthttp.StatusTooManyRequests, "rate-limited", "too many requests ("+name+" limit)")
	return false
}

// decorate adds the headers every answer carries: request id, CORS and the
// RateLimit state of the last limit applied.
func (p *Proxy) decorate(ctx *fasthttp.RequestCtx, st *state) {
	rh := &ctx.Response.Header
	rh.SetBytesV(RequestIDHeader, st.rid)
	if st.cors {
		rh.Add("Vary", "Origin")
		if len(st.origin) > 0 {
			if st.originAll {
				rh.Set("Access-Control-Allow-Origin", "*")
			} else {
				rh.SetBytesV("Access-Control-Allow-Origin", st.origin)
				rh.Set("Access-Control-Allow-Credentials", "true")
			}
			if p.o.CORS.Expose != "" {
				rh.Set("Access-Control-Expose-Headers", p.o.CORS.Expose)
			}
		}
	}
	if st.rlSet {
		// draft-ietf-httpapi-ratelimit-headers: the policy and its state.
		d := st.rl
		b := append(st.hdr[:0], "limit="...)
		b = strconv.AppendInt(b, int64(d.Limit), 10)
		b = append(b, ", remaining="...)
		b = strconv.AppendInt(b, int64(max(0, d.Remaining)), 10)
		b = append(b, ", reset="...)
		b = strconv.AppendInt(b, int64(ceilSeconds(d.ResetAfter)), 10)
		rh.SetBytesV("RateLimit", b)
		if d.Window > 0 {
			b = strconv.AppendInt(b[:0], int64(d.Limit), 10)
			b = append(b, ";w="...)
			b = strconv.AppendInt(b, int64(ceilSeconds(d.Window)), 10)
			rh.SetBytesV("RateLimit-Policy", b)
		}
		st.hdr = b
	}
}

func ceilSeconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// forward sends the request to the route's service, retrying idempotent
// requests on another instance while the retry budget allows.
func (p *Proxy) forward(ctx *fasthttp.RequestCtx, reqCtx context.Context, rt *route.Route, method uint8, start time.Time, st *state) {
	h := &ctx.Request.Header
	svc := p.o.Upstreams.Service(rt.Service)
	if svc == nil {
		writeProblem(ctx, fasthttp.StatusBadGateway, "no-upstream", "route has no upstream service")
		return
	}
	dyn := p.o.Dynamic()

	// Deadline: the route's timeout, or less if the client has less time.
	timeout := rt.Timeout
	if t, ok := dyn.Timeouts[rt.Name]; ok && t > 0 {
		timeout = t
	}
	if v := h.Peek(TimeoutHeader); len(v) > 0 {
		if ms, err := strconv.ParseUint(string(v), 10, 32); err == nil && ms > 0 {
			if d := min(time.Duration(ms)*time.Millisecond, p.o.MaxTimeout); d < timeout {
				timeout = d
			}
		}
	}
	deadline := start.Add(timeout)

	// Canary: an explicit tag is exact; otherwise the weighted split.
	version := ""
	tagged := false
	if tag := canary.Requested(h); len(tag) > 0 {
		version, tagged = string(tag), true
	} else if w := dyn.Canary[rt.Service]; len(w) > 0 {
		vs := svc.Versions()
		version = w.Pick(func(v string) bool { return len(vs[v]) > 0 }, rand.Uint64()>>1)
	}

	idempotent := isIdempotent(ctx.Method(), h)
	if svc.Budget != nil {
		svc.Budget.Request()
	}
	var last *upstream.Endpoint
	for attempt := 1; ; attempt++ {
		ep, err := svc.Pick(version, last)
		if err != nil {
			detail := "no live instance of " + rt.Service
			if tagged {
				detail += " at release " + strconv.Quote(version)
			}
			writeProblem(ctx, fasthttp.StatusServiceUnavailable, "no-instance", detail)
			return
		}
		retry, done := p.attempt(ctx, reqCtx, svc, ep, method, deadline, st)
		if done || !retry {
			return
		}
		if !idempotent || attempt >= p.o.MaxAttempts || time.Until(deadline) <= 0 {
			return
		}
		if svc.Budget != nil && !svc.Budget.Withdraw() {
			if p.metrics != nil {
				p.metrics.retry(svc.Name, "denied_by_budget")
			}
			return
		}
		if p.metrics != nil {
			p.metrics.retry(svc.Name, "sent")
		}
		last = ep
	}
}

// isIdempotent is pkg/retry's rule on fasthttp types: safe methods, or any
// request the client marked with an Idempotency-Key.
func isIdempotent(method []byte, h *fasthttp.RequestHeader) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS":
		return true
	}
	return len(h.Peek("Idempotency-Key")) > 0
}

// attempt makes one upstream call. It returns retry when the failure may be
// retried elsewhere (the response then holds an error answer already, so a
// denied retry still leaves the client a proper reply) and done when the
// outcome is final.
func (p *Proxy) attempt(ctx *fasthttp.RequestCtx, reqCtx context.Context, svc *upstream.Service, ep *upstream.Endpoint, method uint8, deadline time.Time, st *state) (retry, done bool) {
	h := &ctx.Request.Header
	var release func(time.Duration, bool)
	if svc.Limit != nil {
		var ok bool
		if release, ok = svc.Limit.Acquire(); !ok {
			if p.metrics != nil {
				p.metrics.decision("concurrency:"+svc.Name, false)
			}
			ctx.Response.Header.Set("Retry-After", "1")
			writeProblem(ctx, fasthttp.StatusServiceUnavailable, "upstream-overloaded", svc.Name+" is at its concurrency limit")
			return false, true
		}
	}
	var breakerDone func(bool)
	if svc.Breaker != nil {
		var err error
		if breakerDone, err = svc.Breaker.Allow(); err != nil {
			if release != nil {
				release(0, false)
			}
			if p.metrics != nil {
				p.metrics.decision("breaker:"+svc.Name, false)
			}
			ctx.Response.Header.Set("Retry-After", "1")
			writeProblem(ctx, fasthttp.StatusServiceUnavailable, "circuit-open", svc.Name+" is failing; circuit breaker open")
			return false, true
		}
	}
	remaining := time.Until(deadline)
	if remaining <= 0 {
		if release != nil {
			release(0, false)
		}
		if breakerDone != nil {
			breakerDone(false)
		}
		writeProblem(ctx, fasthttp.StatusGatewayTimeout, "timeout", "route timeout reached before the upstream answered")
		return false, true
	}
	st.num = strconv.AppendInt(st.num[:0], max(1, remaining.Milliseconds()), 10)
	h.SetBytesV(TimeoutHeader, st.num)

	var span trace.Span
	callCtx := reqCtx
	if p.tracer != nil {
		// A client span only for a recorded trace: every standard sampler
		// decides a child as it decided the server span, so for the 90% of
		// requests a 10% ratio drops, a client span would be built (span id
		// drawn under the SDK's lock, context value) only to be dropped. The
		// upstream then gets the server span as its parent, which nobody
		// sees because the trace is not recorded.
		if server := trace.SpanFromContext(reqCtx); server.IsRecording() {
			callCtx, span = p.tracer.Start(reqCtx, svc.Name, clientSpan...)
			if span.IsRecording() {
				span.SetAttributes(attribute.String("server.address", ep.Addr), attribute.String("shanhai.upstream.version", ep.Version))
			}
			st.tp = injectTraceparent(h, span.SpanContext(), st.tp)
		} else {
			st.tp = injectTraceparent(h, server.SpanContext(), st.tp)
		}
	}

	t0 := time.Now()
	ep.Begin()
	err := ep.Client.DoDeadline(&ctx.Request, &ctx.Response, deadline)
	ep.End()
	lat := time.Since(t0)

	status := 0
	if err == nil {
		status = ctx.Response.StatusCode()
	}
	failed := err != nil || status == 502 || status == 503 || status == 504
	if release != nil {
		release(lat, failed)
	}
	if breakerDone != nil {
		breakerDone(failed)
	}
	if p.metrics != nil {
		mctx := st.mctx
		if span != nil && span.SpanContext().IsSampled() {
			mctx = callCtx
		}
		p.metrics.upstream(mctx, svc.Name, method, status, lat)
	}
	if span != nil {
		if span.IsRecording() {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			}
		}
		span.End()
	}

	if err != nil {
		ctx.Response.Reset()
		if errors.Is(err, fasthttp.ErrTimeout) || time.Until(deadline) <= 0 {
			writeProblem(ctx, fasthttp.StatusGatewayTimeout, "timeout", "upstream "+svc.Name+" did not answer within the route timeout")
			return false, true
		}
		// Debug only: during an outage this fires per request; the breaker,
		// metrics and spans already tell the story at normal levels.
		p.o.Log.DebugContext(callCtx, "upstream call failed", "upstream", svc.Name, "addr", ep.Addr, "error", err.Error())
		writeProblem(ctx, fasthttp.StatusBadGateway, "upstream-unreachable", "upstream "+svc.Name+" did not answer")
		return true, false
	}
	SanitizeResponse(&ctx.Response.Header)
	return failed, !failed
}
