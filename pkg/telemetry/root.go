package telemetry

import (
	"context"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ServerTracer starts server spans for servers that are not gin (the
// gateway, on fasthttp) with Middleware's fast paths: on a tracer provider
// Setup built, a request its sampler will not sample gets a non-recording
// span of its own without entering the SDK (sampling.go says how), and one
// it samples, continuing a remote parent or starting a trace, gets a
// recording span of its own that the provider's processors export as they
// would the SDK's (serverspan.go). The gateway starts a span for every
// request at a 10% ratio; the SDK's Start of the 90% it drops was about
// 2 µs of its CPU per request.
//
// The effective sampling is exactly the configured sampler's: roots by the
// trace id ratio, remote parents by their sampled flag under parentbased_*,
// local parents always by the SDK. With any other provider every span goes
// through the SDK, as with trace.Tracer.Start.
type ServerTracer struct {
	tracer    trace.Tracer
	sampling  *sampling                // nil: the SDK decides every span
	sdk       *sdktrace.TracerProvider // tp, when sampling is set
	scope     instrumentation.Scope    // the tracer's, for spans recorded without the SDK
	unsampled unsampledExts            // shared by the spans it drops (with provider sdk)
}

// NewServerTracer returns a ServerTracer of tp (usually
// otel.GetTracerProvider() after Setup) for the instrumentation scope.
func NewServerTracer(tp trace.TracerProvider, scope string) *ServerTracer {
	t := &ServerTracer{tracer: tp.Tracer(scope), scope: instrumentation.Scope{Name: scope}}
	if scope == "" {
		t.scope.Name = "go.opentelemetry.io/otel/sdk/tracer" // the SDK's name for an unnamed tracer
	}
	t.sampling, t.sdk = samplingOf(tp)
	t.unsampled = newUnsampledExts(t.sdk)
	return t
}

// Start starts a server span named name under ctx. remote is the caller's
// span context as ParseTraceparent read it (the zero SpanContext when the
// request carried none or an invalid one); it is given separately, not in
// ctx, so that a dropped request does not pay for the context node
// trace.ContextWithRemoteSpanContext would allocate. Without a valid remote,
// a span context already in ctx is the parent.
//
// opts should be a slice built once: a variadic argument built per call
// escapes to the heap. Attributes passed at start reach the SDK's sampler
// only for spans that go through the SDK; set them on recording spans after
// Start instead (the samplers Setup builds decide on the trace id and the
// parent alone).
func (t *ServerTracer) Start(ctx context.Context, remote trace.SpanContext, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return t.StartIn(nil, ctx, remote, name, opts...)
}

// UnsampledSpan is storage for the span ServerTracer.StartIn gives a
// request it does not sample, for a caller that keeps per-request state of
// its own (the gateway's pooled exchange): the span, and the context holding
// it, then live in that state instead of an allocation per request, which
// was the last one an unsampled gateway request made. The zero value is
// ready; it must not be copied once used.
type UnsampledSpan struct {
	span unsampledCtx
	ext  unsampledExt // the span's own, when it cannot share its tracer's
}

// StartIn is Start, except that a span the sampler drops is started in u
// (when u is not nil) instead of a new allocation: the returned context and
// span then point into u and are valid only until u is reused, so neither
// may be kept past the request (as with a pooled fasthttp.RequestCtx). The
// decision, the ids, the flags and the trace state are Start's; a sampled
// span is the recording span Start returns, independent of u.
func (t *ServerTracer) StartIn(u *UnsampledSpan, ctx context.Context, remote trace.SpanContext, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, parent, d, root := t.decide(ctx, remote)
	switch d {
	case dropRoot:
		if u == nil {
			c := new(unsampledCtx)
			return c.initRoot(ctx, root, &t.unsampled), c
		}
		return u.span.initRoot(ctx, root, &t.unsampled), &u.span
	case drop:
		if u == nil {
			return withUnsampled(ctx, parent, &t.unsampled)
		}
		return u.span.init(ctx, parent, &t.unsampled, &u.ext), &u.span
	case useSDK:
		return t.tracer.Start(ctx, name, opts...)
	}
	cfg := trace.NewSpanStartConfig(opts...)
	if cfg.NewRoot() {
		// A new root under a remote parent: rare enough for the SDK.
		return t.tracer.Start(t.sdkContext(ctx, parent, d), name, opts...)
	}
	s := t.startRecording(ctx, parent, name, cfg.SpanKind(), &cfg)
	return s.context(), s
}

// startRecording starts the span decide chose to record without the SDK.
func (t *ServerTracer) startRecording(ctx context.Context, parent trace.SpanContext, name string, kind trace.SpanKind, cfg *trace.SpanConfig) *serverSpan {
	var tid trace.TraceID
	if !parent.IsRemote() {
		// A root: parent is invalid, and holds the trace id the ratio
		// decided on, if it drew one.
		tid, parent = parent.TraceID(), trace.SpanContext{}
	}
	return startServerSpan(ctx, t, parent, tid, name, kind, cfg)
}

// decide is the fast path's decision, shared with Middleware (which builds
// a dropped span inside its request copy):
//
//   - drop: parent is the unsampled span's parent context;
//   - dropRoot: a root the sampler drops, with the trace id root (parent is
//     invalid);
//   - sampleRemote, sampleRoot: the span is recorded without the SDK under
//     parent (for a root, an invalid span context carrying the trace id the
//     ratio decided on, or none);
//   - useSDK: ctx is the context in which to start the SDK's span.
func (t *ServerTracer) decide(ctx context.Context, remote trace.SpanContext) (_ context.Context, parent trace.SpanContext, d decision, root rootID) {
	if t.sampling == nil {
		return t.sdkContext(ctx, remote, useSDK), trace.SpanContext{}, useSDK, root
	}
	if t.dropsRemote(remote) {
		return ctx, remote, drop, root
	}
	if t.isRoot(ctx, remote) {
		d, root = t.sampling.decideRoot()
		return t.decidedRoot(ctx, d, root)
	}
	parent = remote
	if !parent.IsValid() {
		parent = spanContextOf(ctx)
	}
	d, parent, root = t.sampling.decide(parent)
	switch {
	case d == drop, d == dropRoot:
		return ctx, parent, d, root
	case d != useSDK && t.sampling.rec != nil:
		return ctx, parent, d, root
	}
	return t.sdkContext(ctx, parent, d), trace.SpanContext{}, useSDK, root
}

// isRoot reports whether a span started in ctx under remote is certainly a
// root: no valid remote parent and no span in ctx, as for most requests
// without a traceparent. Their decision (sampling.decideRoot) needs no span
// contexts; the invalid one a dropped root carried through sampling.decide
// and back, copied at each step, was about a fifth of the middleware's own
// work for it (~20 of ~90 ns, README.md).
func (t *ServerTracer) isRoot(ctx context.Context, remote trace.SpanContext) bool {
	return t.sampling != nil && !remote.IsValid() && noSpanIn(ctx)
}

// dropsRemote reports whether the span a request continuing remote (the
// caller's span context, valid) would get is dropped: most requests from a
// caller that samples a fraction of its traces, as the gateway does. Like a
// root's (isRoot), their decision is made on the span context as it is,
// without copying it through sampling.decide and back.
func (t *ServerTracer) dropsRemote(remote trace.SpanContext) bool {
	return t.sampling != nil && remote.IsValid() && remote.IsRemote() && t.sampling.dropsRemote(remote)
}

// decidedRoot is decide's result for a root whose decision, sampleRoot or
// dropRoot, sampling.decideRoot made on the drawn trace id root.
func (t *ServerTracer) decidedRoot(ctx context.Context, d decision, root rootID) (context.Context, trace.SpanContext, decision, rootID) {
	var parent trace.SpanContext
	switch {
	case d == dropRoot:
		return ctx, parent, d, root
	case root != (rootID{}):
		parent = root.parent()
	}
	if t.sampling.rec != nil {
		return ctx, parent, d, root
	}
	return t.sdkContext(ctx, parent, d), trace.SpanContext{}, useSDK, root
}

// sdkContext is the context in which the SDK starts a span decide did not
// drop: with the remote parent, or a root's drawn trace id for the ID
// generator (rootIDs).
func (t *ServerTracer) sdkContext(ctx context.Context, parent trace.SpanContext, d decision) context.Context {
	switch {
	case d == sampleRoot && parent.TraceID().IsValid():
		return &rootIDs{Context: ctx, tid: parent.TraceID()}
	case parent.IsValid() && parent.IsRemote():
		return trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	return ctx
}

// StartChild starts a span named name under the span in ctx, for a call
// the request makes (the gateway's client span per upstream attempt). When
// that span is a recording one started without the SDK (Start, StartIn or
// Middleware), the child is recorded the same way, serverspan.go's span:
// one allocation and no copy at End, against about eight allocations and a
// snapshot through the SDK, which the gateway paid on every sampled
// request. The samplers Setup builds would sample such a child anyway:
// parentbased_* samples every child of a sampled local parent, and
// traceidratio and always_on decide on the trace id that already sampled
// the parent (checked here all the same). Any other parent, and a new root,
// go through the SDK as with trace.Tracer.Start.
func (t *ServerTracer) StartChild(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	p, ok := trace.SpanFromContext(ctx).(*serverSpan)
	if !ok || t.sampling == nil || t.sampling.rec == nil ||
		!t.sampling.parentBased && !t.sampling.sampled(p.sc.TraceID()) {
		return t.tracer.Start(ctx, name, opts...)
	}
	cfg := trace.NewSpanStartConfig(opts...)
	if cfg.NewRoot() {
		return t.tracer.Start(ctx, name, opts...)
	}
	s := startServerSpan(ctx, t, p.sc, trace.TraceID{}, name, cfg.SpanKind(), &cfg)
	return s.context(), s
}
