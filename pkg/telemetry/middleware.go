package telemetry

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
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
	return func(m *middleware) { m.tracer = tp.Tracer(scope) }
}

// WithMeterProvider uses mp instead of the global meter provider.
func WithMeterProvider(mp metric.MeterProvider) MiddlewareOption {
	return func(m *middleware) { m.meter = mp.Meter(scope) }
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
// attribute set anew on every request (and canonicalises header names for
// every propagation lookup). This one caches per route, method and status
// everything that does not change between requests, skips all attribute work
// when the span is not sampled, and looks up the W3C headers under their
// canonical names directly. BenchmarkMiddleware compares both; see the
// numbers in this package's README.
//
// Create it after Setup: it binds to the providers that are global then.
func Middleware(opts ...MiddlewareOption) gin.HandlerFunc {
	m := &middleware{
		tracer: otel.Tracer(scope),
		meter:  otel.Meter(scope),
		prop:   otel.GetTextMapPropagator(),
	}
	for _, o := range opts {
		o(m)
	}
	var err error
	m.duration, err = m.meter.Float64Histogram("http.server.request.duration",
		metric.WithUnit("s"),
		metric.WithDescription("Duration of HTTP server requests."),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10),
	)
	if err != nil {
		otel.Handle(err)
	}
	return m.handle
}

type middleware struct {
	tracer   trace.Tracer
	meter    metric.Meter
	prop     propagation.TextMapPropagator
	duration metric.Float64Histogram

	routes sync.Map // routeKey -> *routeInfo
	sets   sync.Map // setKey -> metric.MeasurementOption
}

type routeKey struct{ method, route string }

// routeInfo is what every request to one route and method shares.
type routeInfo struct {
	name      string
	startOpts []trace.SpanStartOption
}

type setKey struct {
	method, route string
	status        int
}

func (m *middleware) handle(c *gin.Context) {
	start := time.Now()
	req := c.Request
	method := methodName(req.Method)
	route := c.FullPath() // gin has matched the route before the handlers run
	ri := m.route(method, route)

	ctx := m.prop.Extract(req.Context(), headerCarrier(req.Header))
	ctx, span := m.tracer.Start(ctx, ri.name, ri.startOpts...)
	if span.IsRecording() {
		span.SetAttributes(
			semconv.URLPath(req.URL.Path),
			semconv.URLScheme(scheme(req)),
			semconv.NetworkProtocolVersion(protoVersion(req)),
		)
	}
	c.Request = req.WithContext(ctx)

	c.Next()

	status := c.Writer.Status()
	if span.IsRecording() {
		span.SetAttributes(semconv.HTTPResponseStatusCode(status))
		if status >= 500 {
			// 4xx is the client's problem; only server errors mark the span.
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		if len(c.Errors) > 0 {
			span.RecordError(c.Errors.Last().Err)
		}
	}
	span.End()
	m.duration.Record(ctx, time.Since(start).Seconds(), m.set(method, route, status))
}

func (m *middleware) route(method, route string) *routeInfo {
	k := routeKey{method, route}
	if v, ok := m.routes.Load(k); ok {
		return v.(*routeInfo)
	}
	name := method
	attrs := []attribute.KeyValue{semconv.HTTPRequestMethodKey.String(method)}
	if route != "" {
		name += " " + route
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	ri := &routeInfo{name: name, startOpts: []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attrs...),
	}}
	v, _ := m.routes.LoadOrStore(k, ri)
	return v.(*routeInfo)
}

// set returns the cached metric attribute set; the key space is bounded by
// routes x known methods x status codes.
func (m *middleware) set(method, route string, status int) metric.MeasurementOption {
	k := setKey{method, route, status}
	if v, ok := m.sets.Load(k); ok {
		return v.(metric.MeasurementOption)
	}
	attrs := []attribute.KeyValue{
		semconv.HTTPRequestMethodKey.String(method),
		semconv.HTTPResponseStatusCode(status),
	}
	if route != "" {
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	if status >= 500 {
		attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(status)))
	}
	opt := metric.WithAttributeSet(attribute.NewSet(attrs...))
	v, _ := m.sets.LoadOrStore(k, opt)
	return v.(metric.MeasurementOption)
}

// methodName folds unknown methods into _OTHER, as the conventions ask, so a
// client cannot blow up metric cardinality with made-up methods.
func methodName(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch,
		http.MethodHead, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "_OTHER"
}

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
