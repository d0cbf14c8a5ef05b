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
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/shanhai-dev/shanhai/gateway/internal/canary"
	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/sockio"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel"
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
	// KeyedRetry per route name, overriding the table's (route.Route's
	// KeyedRetry: whether the upstream honours Idempotency-Key).
	KeyedRetry map[string]bool
}

// ErrorHandler answers what the server rejects before the handler runs:
// oversized bodies (413), slow or malformed requests. A request the read
// timeout cut off is 408 wherever it stopped, as on the event loop: inside
// a chunk-size line fasthttp reports an ErrBrokenChunk that hides the
// timeout (it was 400), so the connection is asked (sockio.ReadTimedOut).
//
// A target the server's URI parse refuses (a control byte, a scheme of
// bytes no scheme has) is answered as Begin answers the same head on the
// event loop, which parses no URI: bad-path, or the head's first fault.
func ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	if sockio.ReadTimedOut(ctx.Conn()) {
		err = os.ErrDeadlineExceeded
	}
	if h := &ctx.Request.Header; targetRefused(h, err) {
		a := headAnswers[headTarget]
		if c := checkHead(h, sentOptional(h), false, scanLines(h.RawHeaders())); c.fault != headSound {
			a = headAnswers[c.fault]
		}
		writeProblem(&ctx.Response, h.RequestURI(), a.status, a.slug, a.detail)
	} else {
		Reject(&ctx.Request, &ctx.Response, err)
	}
	ctx.SetConnectionClose()
}

// targetRefused says whether err is the fasthttp server's refusal of h's
// target (Request.parseURI, between the head and the body): the same
// parse fails the same way again. Asked only of refused requests.
func targetRefused(h *fasthttp.RequestHeader, err error) bool {
	if err == nil || len(h.RequestURI()) == 0 {
		return false
	}
	var u fasthttp.URI
	uerr := u.Parse(h.Host(), h.RequestURI())
	return uerr != nil && uerr.Error() == err.Error()
}

// ErrBusy refuses a request the event loop cannot hold: every loop together
// holds its budget of request bytes not yet handed upstream (evloop's
// budget, GATEWAY_LOOP_HELD_BYTES). Reject answers it 503 gateway-busy.
var ErrBusy = errors.New("the gateway holds its budget of request bytes")

// ErrConnsFull refuses a client connection the event loop cannot take: it
// holds as many as it may (evloop's cap, GATEWAY_LOOP_MAX_CONNS). Reject
// answers it 503 gateway-busy, as ErrBusy.
var ErrConnsFull = errors.New("the gateway holds as many client connections as it may")

// Reject writes the answer to a request the transport could not read: 503
// for ErrBusy and ErrConnsFull, 413 for fasthttp.ErrBodyTooLarge, 431 for
// *fasthttp.ErrSmallBuffer (headers over the read buffer), 408 for a
// timeout, 400 otherwise. Both transports use it, so their answers to bad
// input are the same bytes.
func Reject(req *fasthttp.Request, resp *fasthttp.Response, err error) {
	var netErr net.Error
	var small *fasthttp.ErrSmallBuffer
	uri := req.Header.RequestURI()
	switch {
	case errors.Is(err, ErrBusy):
		// 503, not 413: the request fits the limits; the gateway is
		// holding as much unsent request data as it may.
		writeProblem(resp, uri, fasthttp.StatusServiceUnavailable, "gateway-busy", "the gateway holds as many request bytes as it may; retry later")
		resp.Header.Set(fasthttp.HeaderRetryAfter, "1")
	case errors.Is(err, ErrConnsFull):
		writeProblem(resp, uri, fasthttp.StatusServiceUnavailable, "gateway-busy", "the gateway holds as many client connections as it may; retry later")
		resp.Header.Set(fasthttp.HeaderRetryAfter, "1")
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeProblem(resp, uri, fasthttp.StatusRequestEntityTooLarge, "body-too-large", "the request body exceeds the gateway's limit")
	case errors.As(err, &small):
		writeProblem(resp, uri, fasthttp.StatusRequestHeaderFieldsTooLarge, "headers-too-large", "the request line and headers exceed the gateway's limit")
	case errors.As(err, &netErr) && netErr.Timeout():
		writeProblem(resp, uri, fasthttp.StatusRequestTimeout, "request-timeout", "the request was not received in time")
	default:
		writeProblem(resp, uri, fasthttp.StatusBadRequest, "malformed-request", "the request could not be parsed")
	}
}

// ExpectsContinue says whether the client waits for a 100 (Continue) before
// it sends the body h announces: Expect: 100-continue, in any letter case
// (RFC 9110 §10.1.1), from an HTTP/1.1 client (one of HTTP/1.0 cannot read
// a 100, and the expectation is ignored). The transports ask only while a
// body is still to come, so a request without one never looks.
func ExpectsContinue(h *fasthttp.RequestHeader) bool {
	return h.IsHTTP11() && bytes.EqualFold(h.Peek(fasthttp.HeaderExpect), continueValue)
}

var (
	continueValue = []byte("100-continue")
	// continueUnanswered is the same expectation (RFC 9110 §10.1.1: any
	// letter case) in a case the fasthttp server does not answer.
	continueUnanswered = []byte("100-Continue")
)

// SupportedVersion says whether h's request line names HTTP/1.1 or
// HTTP/1.0, the only versions the gateway speaks (RFC 9110 §15.6.6). The
// parser takes any HTTP/d.d, and both transports read every version but
// 1.1 as 1.0.
func SupportedVersion(h *fasthttp.RequestHeader) bool {
	proto := h.Protocol()
	return string(proto) == "HTTP/1.1" || string(proto) == "HTTP/1.0"
}

// HeaderReceived is the fasthttp server's hook between a request's head and
// its body. That server answers 100 to exactly "Expect: 100-continue" in the
// first Expect field, whatever the protocol: the field is rewritten so that
// it answers as ExpectsContinue says. An HTTP/1.0 client's changes only its
// letter case, which the server's exact match misses, rather than being
// deleted with any other Expect field: Begin drops it when it is the only
// one (see loneExpect). A request with no body to read skips the look-up;
// HTTP/1.0 ones do not, as the server would answer even those.
//
// A request of a version the gateway does not speak is answered 505 by
// Begin and its connection closed: its body is not waited for (a short one
// waited out the read timeout and got 408), so the head is made to announce
// none, and no 100 is owed.
//
// A request whose Content-Length passes maxBody (the server's limit) gets
// no 100 either, as on the event loop: the server answers 413 without
// reading the body. It sent a 100 first, and the client its whole body,
// read and dropped after the 413 while the connection lingered; saving
// that is what the expectation is for (RFC 9110 §10.1.1).
//
// A chunked request is marked before its body is read (MarkTrailer).
func HeaderReceived(h *fasthttp.RequestHeader, maxBody int) fasthttp.RequestConfig {
	if n := h.ContentLength(); h.IsHTTP11() && n != -1 && n <= 0 {
		return fasthttp.RequestConfig{}
	}
	if !h.IsHTTP11() && !SupportedVersion(h) {
		h.SetContentLength(0)
		h.Del(fasthttp.HeaderExpect)
		return fasthttp.RequestConfig{}
	}
	MarkTrailer(h)
	v := h.Peek(fasthttp.HeaderExpect)
	switch {
	case len(v) == 0 || !bytes.EqualFold(v, continueValue):
	case !h.IsHTTP11() || h.ContentLength() > maxBody:
		h.SetBytesV(fasthttp.HeaderExpect, continueUnanswered)
	case !bytes.Equal(v, continueValue):
		h.SetBytesV(fasthttp.HeaderExpect, continueValue)
	}
	return fasthttp.RequestConfig{}
}

// Options assemble a Proxy. Nil parts are switched off, which is how the
// "routing only" benchmark variant is built.
type Options struct {
	Table      *route.Table
	Upstreams  *upstream.Pool
	Auth       Authenticator
	IPLimit    Limiter
	LoginLimit Limiter // POST to log in, refresh or change the password (isLogin)
	UserLimit  Limiter
	// MaxAttempts per request including the first (retries only for
	// safe methods, and keyed requests on routes whose upstream honours
	// Idempotency-Key). Default 2.
	MaxAttempts int
	// MaxTimeout caps every deadline: a client's X-Request-Timeout-Ms and
	// a route's timeout, the table's or a dynamic one. Default 30s.
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
	watch   clientWatch // the fasthttp transport's clients with a request upstream
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

// state is per-request scratch space, reused with its Exchange.
type state struct {
	path, uri, key, rid, tp, xff, num, hdr []byte
	sent                                   optional // what the client sent of the optional fields
	// Response decorations, written last because an upstream call resets
	// the response.
	rl    quota.Decision
	rlSet bool
	// pol is the RateLimit-Policy value last formatted, for polLimit and
	// polWindow: a limit's policy changes only with its configuration, so
	// a reused exchange mostly finds it formatted already.
	pol       []byte
	polLimit  int
	polWindow time.Duration
	origin    []byte
	originAll bool // "*" rather than the echoed origin
	cors      bool
	// respelled: decorate's fields the upstream's answer has in another
	// spelling (sanitizeResponse).
	respelled decorations
	// mctx is the context metric calls get: the request's while its trace
	// is sampled, so that histograms keep exemplars pointing at it, and
	// Background otherwise. The SDK's trace-based exemplar filter looks the
	// span up in the context on every measurement; on Background that
	// lookup ends at once (it was about 3% of the gateway's CPU).
	mctx context.Context
}

// Handle serves one request on the fasthttp transport: the phases in
// sequence, the upstream call blocking this goroutine in between.
func (p *Proxy) Handle(ctx *fasthttp.RequestCtx) {
	x := NewExchange(&ctx.Request, &ctx.Response, remoteAddr(ctx), ctx)
	defer x.Release()
	// HostClient writes the Host of the URI the server parsed, which is
	// lower-cased (and empty for an HTTP/1.0 request without one), unless
	// told to write the header: the upstream gets the Host as sent, or as
	// the chain set it, as on the event loop.
	ctx.Request.UseHostHeader = true
	step := p.Begin(x, true)
	var call *upstream.Call
	if step == Send {
		// The client's close is looked for while the request is upstream
		// (clientWatch); a TLS client's is not (no socket of its own here).
		if c, ok := ctx.Conn().(*sockio.Conn); ok {
			x.watch.conn, call = c, &x.watch.call
			p.watch.add(&x.watch)
			defer p.watch.remove(&x.watch)
		}
	}
	for step == Send {
		err := x.Endpoint.DoDeadline(x.Req, x.Resp, x.Deadline, call)
		if err != nil && errors.Is(err, sockio.ErrUnanswered) && p.Replay(x) {
			// The upstream closed the pooled connection as the request
			// arrived (most often its idle timeout): the endpoint's other
			// idle ones, which sat idle as long or longer (the pool hands
			// out the last used first), are as likely closed, so the
			// request goes on a new connection.
			x.Endpoint.Client.CloseIdleConnections()
			err = x.Endpoint.DoDeadline(x.Req, x.Resp, x.Deadline, call)
		}
		if errors.Is(err, upstream.ErrAbandoned) {
			// The client went away (clientWatch): no answer, no retry,
			// and no evidence about the upstream (Received).
			err = ErrClientGone
			x.Close = true
		}
		// DoDeadline resets Resp, and with it the server's NoDefaultContentType:
		// an answer without Content-Type would go out as text/plain.
		x.Resp.Header.SetNoDefaultContentType(true)
		if err == nil && x.Resp.StatusCode() < 200 {
			// An interim answer (the client reads past 100 Continue only;
			// Received makes it a 502): the final one is still coming on
			// the connection just pooled. Dropped, with the endpoint's other
			// idle ones, before a request takes it and that answer.
			x.Endpoint.Client.CloseIdleConnections()
		}
		step = p.Received(x, err)
	}
	p.Finish(x)
	if x.Close {
		ctx.SetConnectionClose()
	}
}

func isLogin(method, path []byte) bool {
	return string(method) == "POST" && (string(path) == "/api/v1/sessions" || string(path) == "/api/v1/sessions/refresh" || string(path) == "/api/v1/users/me/password")
}

func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	if ta, ok := ctx.RemoteAddr().(*net.TCPAddr); ok {
		return ta.AddrPort().Addr()
	}
	return netip.Addr{}
}

// decorate adds the headers every answer carries: request id, CORS and the
// RateLimit state of the last limit applied.
func (p *Proxy) decorate(resp *fasthttp.Response, st *state) {
	rh := &resp.Header
	if st.respelled != 0 {
		dropRespelled(rh, st.respelled&st.decorating(p.o.CORS))
	}
	rh.SetCanonical(requestIDKey, st.rid)
	if p.o.CORS != nil {
		// Every answer, also one to a request without Origin: it lacks the
		// allow headers, and a shared cache must not give it to a browser
		// asking from an allowed origin (Fetch standard, "CORS protocol and
		// HTTP caches").
		rh.Add("Vary", "Origin")
	}
	if st.cors {
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
		rh.SetCanonical(rateLimitKey, b)
		st.hdr = b
		if d.Window > 0 {
			if len(st.pol) == 0 || st.polLimit != d.Limit || st.polWindow != d.Window {
				st.pol = strconv.AppendInt(st.pol[:0], int64(d.Limit), 10)
				st.pol = append(st.pol, ";w="...)
				st.pol = strconv.AppendInt(st.pol, int64(ceilSeconds(d.Window)), 10)
				st.polLimit, st.polWindow = d.Limit, d.Window
			}
			rh.SetCanonical(rateLimitPolicyKey, st.pol)
		}
	}
}

// decorating is what decorate is about to set of decorated's fields: of
// the upstream's, only those give way (as on the event loop, whose answers
// have canonical names that decorate's replace).
func (st *state) decorating(cors *CORS) decorations {
	sets := decRequestID
	if st.cors && len(st.origin) > 0 {
		sets |= decAllowOrigin
		if !st.originAll {
			sets |= decAllowCredentials
		}
		if cors.Expose != "" {
			sets |= decExposeHeaders
		}
	}
	if st.rlSet {
		sets |= decRateLimit
		if st.rl.Window > 0 {
			sets |= decRateLimitPolicy
		}
	}
	return sets
}

// The RateLimit header names in fasthttp's canonical form (the form
// SetBytesV would make of "RateLimit"; header names are case-insensitive):
// SetCanonical skips the copy and normalisation of the name that SetBytesV
// makes on every call (a third of these headers' cost in BenchmarkChain's
// profile), and still replaces a field of that name the upstream sent in
// that spelling (in another, dropRespelled deletes it first).
var (
	rateLimitKey       = []byte("Ratelimit")
	rateLimitPolicyKey = []byte("Ratelimit-Policy")
	requestIDKey       = []byte("X-Request-Id")         // RequestIDHeader
	timeoutKey         = []byte("X-Request-Timeout-Ms") // TimeoutHeader
	maxForwardsKey     = []byte("Max-Forwards")
)

func ceilSeconds(d time.Duration) int { return int((d + time.Second - 1) / time.Second) }

// isIdempotent says whether a failed attempt of the request may be retried:
// safe methods always; any other only when the client marked it with an
// Idempotency-Key and the route's upstream honours that key (pkg/retry's
// rule assumed every upstream did, and a keyed POST to the user service ran
// twice). keyed is the dynamic config's per-route override of
// rt.KeyedRetry, looked up only for such a request. sent is what
// sentOptional found.
func isIdempotent(method []byte, h *fasthttp.RequestHeader, sent optional, rt *route.Route, keyed map[string]bool) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS":
		return true
	}
	if sent&optIdempotencyKey == 0 || len(h.Peek("Idempotency-Key")) == 0 {
		return false
	}
	if v, ok := keyed[rt.Name]; ok {
		return v
	}
	return rt.KeyedRetry
}
