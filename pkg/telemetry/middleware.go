package telemetry

import (
	"context"
	"maps"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

const scope = "github.com/shanhai-dev/shanhai/pkg/telemetry"

// MiddlewareOption changes where Middleware sends its telemetry (tests and
// benchmarks); by default it uses the otel globals that Setup installed.
type MiddlewareOption func(*middleware)

// WithTracerProvider uses tp instead of the global tracer provider.
func WithTracerProvider(tp trace.TracerProvider) MiddlewareOption {
	return func(m *middleware) { m.tp = tp }
}

// WithRegisterer registers the request-duration histogram with reg instead
// of the registry of the last Setup (or Prometheus's default registry when
// Setup was not called).
func WithRegisterer(reg prometheus.Registerer) MiddlewareOption {
	return func(m *middleware) { m.reg = reg }
}

// WithoutSpans lists route templates that get no span (only the duration
// histogram): health probes and scrapes arrive every few seconds from
// machines, and a root trace for each would bury the traces people look for.
func WithoutSpans(routes ...string) MiddlewareOption {
	return func(m *middleware) {
		if m.noSpan == nil {
			m.noSpan = map[string]bool{}
		}
		for _, r := range routes {
			m.noSpan[r] = true
		}
	}
}

// WithContextFunc lets the caller add to the request context (a request id,
// say) in the same step that puts the span there, so a request is copied
// once per request instead of once per middleware (http.Request.WithContext
// copies the whole request). fn runs for every request, before the handlers.
func WithContextFunc(fn func(*gin.Context, context.Context) context.Context) MiddlewareOption {
	return func(m *middleware) { m.ctxFunc = fn }
}

// WithPropagator uses p instead of the global propagator.
func WithPropagator(p propagation.TextMapPropagator) MiddlewareOption {
	return func(m *middleware) { m.prop = p }
}

// Middleware starts a server span per request, named "METHOD /route/{template}"
// and continuing the caller's trace (traceparent), and records the
// http.server.request.duration histogram (seconds) with http.route,
// http.request.method and http.response.status_code, as the OpenTelemetry
// HTTP semantic conventions name them.
//
// Why not otelgin: it is a general wrapper that builds the span name and the
// attribute set anew on every request, records its metrics through the OTel
// SDK (an attribute-set hash and a lock per request) and canonicalises header
// names on every propagation lookup. This one caches per route and method
// what does not change between requests, sets no span attributes unless the
// span is sampled, records into a pre-resolved Prometheus series and looks up
// the W3C headers under their canonical names. testdata/otelgincompare/run.sh
// measures both on the same engine: otelgin v0.65 took 31 allocations and
// about 3.7x the CPU of this middleware per sampled request, 25 allocations
// and about 9x the CPU per unsampled one (this one: 6 and 3 allocations then,
// 3 and 1 now). README.md has the current numbers and what is left of them.
//
// On a tracer provider Setup built, a request the sampler will not sample
// never reaches the SDK: it gets a non-recording span of the middleware's own
// with the same ids and flags (sampling.go says how and why). A sampled one
// gets a recording span of the middleware's own, which the provider's span
// processors export as they would the SDK's (serverspan.go).
//
// Create it after Setup: it binds to the providers that are global then.
func Middleware(opts ...MiddlewareOption) gin.HandlerFunc {
	m := &middleware{
		tp:   otel.GetTracerProvider(),
		prop: otel.GetTextMapPropagator(),
		reg:  defaultRegisterer(),
	}
	for _, o := range opts {
		o(m)
	}
	m.server = NewServerTracer(m.tp, scope)
	if m.viaSDK && m.server.sampling != nil {
		s := *m.server.sampling
		s.rec = nil
		m.server.sampling = &s
	}
	if !m.noDuration {
		m.duration = durationsFor(m.reg)
	}
	_, m.w3c = m.prop.(w3c)
	return m.handle
}

type middleware struct {
	tp       trace.TracerProvider
	server   *ServerTracer // its decision is the gateway's too
	prop     propagation.TextMapPropagator
	reg      prometheus.Registerer
	duration *durations
	noSpan   map[string]bool // read-only after Middleware returns
	ctxFunc  func(*gin.Context, context.Context) context.Context
	w3c      bool // prop is Propagator(): extraction needs a traceparent or baggage header
	// noDuration leaves the histogram (and its two clock readings) out; only
	// the benchmarks set it, to tell the tracing part of the cost from the
	// metric part.
	noDuration bool
	// viaSDK records sampled spans through the SDK even on Setup's
	// provider; only tests set it, to compare the two.
	viaSDK bool

	routes   [len(methods)]atomic.Pointer[map[string]*routeInfo] // by methodIndex, then route template
	routesMu sync.Mutex                                          // held to add a route
	// recent finds a route's info by the address of its template, in
	// front of routes (see route).
	recent [routeSlots]atomic.Pointer[routeInfo]
}

// serverKind is a ready slice: a variadic argument built per call escapes
// to the heap (one allocation per request).
var serverKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// routeInfo is what every request to one route and method shares.
type routeInfo struct {
	method, route string
	methodIndex   int
	name          string
	noSpan        bool
	attrs         []attribute.KeyValue // method and route, for recording spans
	series        statusSeries
}

func (m *middleware) handle(c *gin.Context) {
	var start int64
	if m.duration != nil {
		start = monotonic()
	}
	req := c.Request
	// gin has matched the route before the handlers run, so the template
	// is known here and the span gets its final name at start.
	ri := m.route(methodIndex(req.Method), c.FullPath())
	// A handler's panic that no recovery inside this middleware stops (gin's
	// Recovery used before it, or net/http's) skipped the span's end and the
	// metric: the request is recorded as the 500 it is answered with, and
	// the panic goes on. (pkg/server's recovery is inside: there the request
	// comes back here answered.) An open-coded defer: no cost to speak of
	// on a request that does not panic.
	var span trace.Span
	finished := false
	defer func() {
		if !finished {
			m.finish(c, ri, req, span, panicStatus(c), start)
		}
	}()
	if ri.noSpan {
		if m.ctxFunc != nil {
			c.Request = req.WithContext(m.ctxFunc(c, req.Context()))
		}
		c.Next()
		finished = true
		m.finish(c, ri, req, nil, c.Writer.Status(), start)
		return
	}

	ctx, sp, ur := m.start(req, ri)
	span = sp
	if m.ctxFunc != nil {
		ctx = m.ctxFunc(c, ctx)
	}
	// The one copy of the request: handlers read the span from
	// c.Request.Context(), and net/http forbids changing the request it
	// passed in, so the context can only travel in a copy. A request that
	// is not sampled has its copy in the same allocation as its span.
	if ur != nil {
		ur.req = *req.WithContext(ctx) // inlined: the temporary stays on the stack
		c.Request = &ur.req
	} else {
		c.Request = req.WithContext(ctx)
	}

	c.Next()
	finished = true
	m.finish(c, ri, req, span, c.Writer.Status(), start)
}

// panicStatus is the status of a request whose handler panicked past the
// middleware: what it had sent, or the 500 a recovery outside answers (and
// net/http's cut connection counts as).
func panicStatus(c *gin.Context) int {
	if c.Writer.Written() {
		return c.Writer.Status()
	}
	return http.StatusInternalServerError
}

// finish ends a request's span (nil for a route without spans) and records
// its duration with status.
func (m *middleware) finish(c *gin.Context, ri *routeInfo, req *http.Request, span trace.Span, status int, start int64) {
	if span == nil {
		m.record(ri, status, start, trace.SpanContext{})
		return
	}
	if span.IsRecording() {
		setAttributes(span, ri, status, req)
		if status >= 500 {
			// 4xx is the client's problem; only server errors mark the span.
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		if len(c.Errors) > 0 {
			span.RecordError(c.Errors.Last().Err)
		}
	}
	span.End()
	var sc trace.SpanContext // for an exemplar, which only sampled spans give
	if _, dropped := span.(*unsampledCtx); !dropped {
		sc = span.SpanContext()
	}
	m.record(ri, status, start, sc)
}

// unsampledRequest is the request copy of a request that is not sampled and
// its span, in one allocation (352 bytes) instead of two (320 and 48): the
// copy has to be made anyway to carry the span to the handlers, and it keeps
// the span alive as long as the span's context is reachable.
type unsampledRequest struct {
	req  http.Request
	span unsampledCtx
}

// start starts the server span, continuing the caller's trace. With a
// sampler Setup configured, a span it would drop never reaches the SDK
// (sampling.go says why); it is then returned inside an unsampledRequest
// whose req the caller fills in. A span it samples under a remote parent or
// as a root is recorded without the SDK too (serverspan.go).
func (m *middleware) start(req *http.Request, ri *routeInfo) (context.Context, trace.Span, *unsampledRequest) {
	ctx := req.Context()
	h := req.Header
	var remote trace.SpanContext // read here, not yet in ctx
	switch {
	case m.server.sampling != nil && m.w3c && len(h["Baggage"]) == 0:
		// The propagator can only hand back what it reads inside a new
		// context (two allocations), which a dropped span does not need.
		v := h["Traceparent"]
		if len(v) == 0 {
			if noSpanIn(ctx) {
				return m.startRoot(ctx, ri)
			}
			break // a span in ctx: a local parent, decided below
		}
		var p trace.SpanContextConfig
		if !parseTraceparent(v[0], &p) {
			break // as if there were none
		}
		p.Remote = true
		if s := h["Tracestate"]; len(s) > 0 {
			// As with the propagator, a bad tracestate is dropped and
			// does not invalidate the traceparent.
			p.TraceState, _ = trace.ParseTraceState(s[0])
		}
		if m.server.sampling.dropsParent(p.TraceID, p.TraceFlags) {
			// decide's case of an unsampled caller, from the header's
			// fields: building the span context only to take it apart
			// again was about a quarter of this path's own work.
			ur := new(unsampledRequest)
			return ur.span.initFrom(ctx, p.TraceID, p.TraceFlags, p.TraceState, &m.server.unsampled, nil), &ur.span, ur
		}
		remote = trace.NewSpanContext(p)
	case !m.w3c || len(h["Traceparent"]) > 0 || len(h["Baggage"]) > 0:
		ctx = m.prop.Extract(ctx, headerCarrier(h))
	}
	if m.server.dropsRemote(remote) {
		// decide's case of an unsampled caller, without its copies.
		ur := new(unsampledRequest)
		return ur.span.init(ctx, remote, &m.server.unsampled, nil), &ur.span, ur
	}
	if m.server.isRoot(ctx, remote) {
		return m.startRoot(ctx, ri)
	}
	ctx, parent, d, root := m.server.decide(ctx, remote)
	switch d {
	case dropRoot:
		ur := new(unsampledRequest)
		return ur.span.initRoot(ctx, root, &m.server.unsampled), &ur.span, ur
	case drop:
		ur := new(unsampledRequest)
		return ur.span.init(ctx, parent, &m.server.unsampled, nil), &ur.span, ur
	case sampleRemote, sampleRoot:
		s := m.server.startRecording(ctx, parent, ri.name, trace.SpanKindServer, nil)
		return s.context(), s, nil
	}
	return m.startSDK(ctx, ri)
}

// startRoot is start for a request that is certainly a root
// (ServerTracer.isRoot): decide's root case, without the span contexts a
// dropped root does not need.
func (m *middleware) startRoot(ctx context.Context, ri *routeInfo) (context.Context, trace.Span, *unsampledRequest) {
	d, root := m.server.sampling.decideRoot()
	if d == dropRoot {
		ur := new(unsampledRequest)
		return ur.span.initRoot(ctx, root, &m.server.unsampled), &ur.span, ur
	}
	ctx, parent, d, _ := m.server.decidedRoot(ctx, d, root)
	if d == sampleRoot {
		s := m.server.startRecording(ctx, parent, ri.name, trace.SpanKindServer, nil)
		return s.context(), s, nil
	}
	return m.startSDK(ctx, ri)
}

// startSDK starts the span through the SDK, which decides on it.
func (m *middleware) startSDK(ctx context.Context, ri *routeInfo) (context.Context, trace.Span, *unsampledRequest) {
	// Only the span kind is passed at start: attributes given to Start are
	// copied into a fresh config slice on every request, sampled or not,
	// which was a fifth of the unsampled cost. Recording spans get them
	// after the handlers; samplers here decide on the trace id and the
	// parent alone.
	ctx, span := m.server.tracer.Start(ctx, ri.name, serverKind...)
	return ctx, span, nil
}

// record observes the request's duration in its series.
func (m *middleware) record(ri *routeInfo, status int, start int64, sc trace.SpanContext) {
	if m.duration == nil {
		return
	}
	ri.series.get(status, func() *DurationSeries {
		return m.duration.seriesFor(ri.method, ri.route, status)
	}).Observe(float64(monotonic()-start)/1e9, sc)
}

// attrBufs holds the arrays a recording span's attributes are assembled in:
// passed through the trace.Span interface, a local array escapes to the heap
// (384 bytes per sampled request), and the SDK copies the values into its
// own slice anyway, so the array is free again as soon as SetAttributes
// returns.
var attrBufs = sync.Pool{New: func() any { return new([6]attribute.KeyValue) }}

// setAttributes sets the span's semantic-convention attributes in one call:
// the SDK grows its attribute slice per call.
func setAttributes(span trace.Span, ri *routeInfo, status int, req *http.Request) {
	if s, ok := span.(*serverSpan); ok && s.appendAttributes(len(ri.attrs)+4, func(kv []attribute.KeyValue) []attribute.KeyValue {
		return appendHTTPAttrs(kv, ri, status, req)
	}) {
		return
	}
	kv := attrBufs.Get().(*[6]attribute.KeyValue)
	span.SetAttributes(appendHTTPAttrs(kv[:0], ri, status, req)...)
	*kv = [6]attribute.KeyValue{} // keep no request's strings alive in the pool
	attrBufs.Put(kv)
}

// appendHTTPAttrs appends a server span's semantic-convention attributes,
// all valid and with distinct keys, to kv.
func appendHTTPAttrs(kv []attribute.KeyValue, ri *routeInfo, status int, req *http.Request) []attribute.KeyValue {
	return append(append(kv, ri.attrs...),
		semconv.HTTPResponseStatusCode(status),
		semconv.URLPath(req.URL.Path),
		semconv.URLScheme(scheme(req)),
		semconv.NetworkProtocolVersion(protoVersion(req)))
}

// origin anchors monotonic. Durations need only the monotonic clock, and
// reading it alone costs half of time.Now, which reads the wall clock too.
var origin = time.Now()

// monotonic is the monotonic clock in nanoseconds since origin.
func monotonic() int64 { return int64(time.Since(origin)) }

// route returns what requests of one method to one route template share.
//
// gin hands every request to a route the same template string (its tree
// node's), so route first looks in recent, a small table indexed by the
// address of the template's bytes: a hit is a multiplication and two
// comparisons, where hashing the template for a map lookup was 10-15 ns a
// request. The address is only a hint: an entry is used only if it holds
// the very same bytes (address and length), which its routeInfo keeps alive,
// so it cannot be another string. Each slot is filled once, by the first
// route that lands in it; a route whose slot another holds, or whose
// template is built anew per request, takes the maps every time, as before.
func (m *middleware) route(method int, route string) *routeInfo {
	p := unsafe.StringData(route)
	slot := &m.recent[routeSlot(p, method)]
	if ri := slot.Load(); ri != nil && unsafe.StringData(ri.route) == p && len(ri.route) == len(route) &&
		ri.methodIndex == method {
		return ri
	}
	ri := m.routeByName(method, route)
	if unsafe.StringData(ri.route) == p {
		slot.CompareAndSwap(nil, ri)
	}
	return ri
}

// routeSlots is the size of middleware.recent: a service has a few dozen
// routes, and a collision only costs the map lookup.
const (
	routeSlotBits = 6
	routeSlots    = 1 << routeSlotBits
)

// routeSlot is the slot of recent for a template at p and a method: a
// Fibonacci hash of the address, whose low bits are alignment, and the
// method, since one template string may serve several methods.
func routeSlot(p *byte, method int) uint64 {
	return (uint64(uintptr(unsafe.Pointer(p))) ^ uint64(method)) * 0x9e3779b97f4a7c15 >> (64 - routeSlotBits)
}

// routeByName is route's lookup by the template's value. The routes are
// per method in maps that are copied on write: a lookup is one string hash
// and no lock (a sync.Map keyed by method and route hashed both strings,
// about 25 ns a request), and there are only as many entries as registered
// routes (unmatched requests share the route "").
func (m *middleware) routeByName(method int, route string) *routeInfo {
	if rs := m.routes[method].Load(); rs != nil {
		if ri, ok := (*rs)[route]; ok {
			return ri
		}
	}
	m.routesMu.Lock()
	defer m.routesMu.Unlock()
	var old map[string]*routeInfo
	if p := m.routes[method].Load(); p != nil {
		old = *p
	}
	if ri, ok := old[route]; ok {
		return ri
	}
	name := methods[method]
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(name)}
	ri := &routeInfo{method: name, route: route, methodIndex: method, name: name, noSpan: route != "" && m.noSpan[route]}
	if route != "" {
		ri.name += " " + route
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	ri.attrs = attrs
	rs := make(map[string]*routeInfo, len(old)+1)
	maps.Copy(rs, old)
	rs[route] = ri
	m.routes[method].Store(&rs)
	return ri
}

// methods are the request methods the conventions name, and _OTHER (last)
// for any other, so a client cannot blow up metric cardinality with made-up
// methods.
var methods = [...]string{
	http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch,
	http.MethodHead, http.MethodOptions, http.MethodConnect, http.MethodTrace, "_OTHER",
}

// methodIndex is the index of m in methods.
func methodIndex(m string) int {
	for i, name := range methods[:len(methods)-1] {
		if m == name {
			return i
		}
	}
	return len(methods) - 1
}

// methodName is m, or _OTHER for a method the conventions do not name.
func methodName(m string) string { return methods[methodIndex(m)] }

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	return "http"
}

func protoVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 3:
		return "3"
	case r.ProtoMinor == 0:
		return "1.0"
	}
	return "1.1"
}

// headerCarrier reads the W3C headers under their canonical names without
// canonicalising the key on every lookup (http.Header.Get allocates for keys
// like "traceparent" that are not in net/http's common-header table).
type headerCarrier http.Header

func (h headerCarrier) Get(key string) string {
	var v []string
	switch key {
	case "traceparent":
		v = h["Traceparent"]
	case "tracestate":
		v = h["Tracestate"]
	case "baggage":
		v = h["Baggage"]
	default:
		return http.Header(h).Get(key)
	}
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (h headerCarrier) Set(key, value string) { http.Header(h).Set(key, value) }

func (h headerCarrier) Keys() []string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	return keys
}
