package telemetry

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Why this file exists: the SDK's Start of a span it will not sample costs
// more than the whole budget for an unsampled request (issue 2: 0.25 µs), and
// it is spent only to learn a decision that, for the samplers Setup installs,
// depends on nothing but the parent's sampled flag and the trace id. So Setup
// builds the sampler itself from OTEL_TRACES_SAMPLER / _ARG, keeps a
// description of it (sampling), and Middleware decides first: a request that
// will not be sampled gets a non-recording span of its own (fresh ids, flags
// 00, the SDK's tracer provider) without the SDK; one that will be is
// recorded by a span of its own too (serverspan.go), or, where that span
// does not apply, goes through the SDK, which reaches the same decision,
// because a sampled root's trace id, drawn by the middleware, is handed to
// the SDK by the ID generator Setup installs (rootIDs). Middleware with any
// other provider (tests pass their own) takes the SDK path for every request.

// sampling is the sampler Setup configured, reduced to what decides a server
// span: whether a remote parent's flag decides (parentbased_*), and the root
// ratio, applied to the trace id exactly as sdktrace.TraceIDRatioBased does.
type sampling struct {
	parentBased bool
	all         bool   // every root is sampled (ratio 1)
	bound       uint64 // otherwise sampled iff big-endian trace id bytes 8..16, shifted right once, < bound
	// rec records sampled server spans without the SDK (serverspan.go);
	// nil keeps them on the SDK.
	rec *recorder
}

// sampled is sdktrace.TraceIDRatioBased's decision for a trace id.
func (s *sampling) sampled(tid trace.TraceID) bool {
	return s.sampledLow(binary.BigEndian.Uint64(tid[8:16]))
}

// sampledLow is sampled for a trace id whose bytes 8..16 are lo, big-endian.
func (s *sampling) sampledLow(lo uint64) bool { return s.all || lo>>1 < s.bound }

// Environment variable names and values the SDK reads (the specification's
// general SDK configuration).
const (
	envSampler    = "OTEL_TRACES_SAMPLER"
	envSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
	// envObservability turns on the SDK's experimental self-metrics, which
	// count every span the SDK starts, sampled or not: spans started outside
	// the SDK would be missing from them, so it disables the fast path.
	envObservability = "OTEL_GO_X_OBSERVABILITY"
)

// samplerFromEnv builds the sampler OTEL_TRACES_SAMPLER / _ARG name, and its
// description. The SDK reads these variables itself when given no sampler,
// but does not say what it chose, so Setup reads them instead, following the
// SDK's rules: the same six names (anything else is reported and the default
// parentbased_always_on used), a missing, unparsable or out-of-range ratio
// reported and replaced by 1. NaN counts as out of range here, where the SDK
// lets it through to TraceIDRatioBased, whose bound uint64(NaN·2⁶³) depends
// on the platform and which the fast path could not mirror. TestSamplerMatchesSDK checks decisions against
// the SDK's own reading. The returned error is a warning: the sampler is
// usable either way, as with the SDK.
func samplerFromEnv() (sdktrace.Sampler, sampling, error) {
	name := strings.ToLower(strings.TrimSpace(os.Getenv(envSampler)))
	arg := strings.TrimSpace(os.Getenv(envSamplerArg))
	var err error
	ratio := func() float64 {
		if arg == "" {
			return 1
		}
		v, perr := strconv.ParseFloat(arg, 64)
		switch {
		case perr != nil:
			err = fmt.Errorf("telemetry: %s=%q: %w; using 1", envSamplerArg, arg, perr)
			return 1
		case !(v >= 0 && v <= 1): // NaN too: every comparison with it is false
			err = fmt.Errorf("telemetry: %s=%q is outside [0, 1]; using 1", envSamplerArg, arg)
			return 1
		}
		return v
	}
	switch name {
	case "always_on":
		return sdktrace.AlwaysSample(), sampling{all: true}, nil
	case "always_off":
		return sdktrace.NeverSample(), sampling{}, nil
	case "traceidratio":
		r := ratio()
		return sdktrace.TraceIDRatioBased(r), ratioSampling(r, false), err
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), sampling{parentBased: true}, nil
	case "parentbased_traceidratio":
		r := ratio()
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), ratioSampling(r, true), err
	case "", "parentbased_always_on":
	default:
		err = fmt.Errorf("telemetry: %s=%q is not supported; using parentbased_always_on", envSampler, name)
	}
	return sdktrace.ParentBased(sdktrace.AlwaysSample()), sampling{parentBased: true, all: true}, err
}

// ratioSampling mirrors sdktrace.TraceIDRatioBased: 1 or more samples every
// trace, 0 or less none, anything between compares against fraction·2⁶³.
func ratioSampling(fraction float64, parentBased bool) sampling {
	s := sampling{parentBased: parentBased}
	switch {
	case fraction >= 1:
		s.all = true
	case fraction > 0:
		s.bound = uint64(fraction * (1 << 63))
	}
	return s
}

// configured maps each tracer provider Setup built to its sampling, so a
// Middleware bound to that provider (the global one, or Provider.Tracer
// passed with WithTracerProvider) can decide without the SDK. The owner's
// Shutdown removes its entry.
var configured sync.Map // *sdktrace.TracerProvider -> *sampling

func samplingOf(tp trace.TracerProvider) (*sampling, *sdktrace.TracerProvider) {
	sdk, ok := tp.(*sdktrace.TracerProvider)
	if !ok {
		return nil, nil
	}
	if s, ok := configured.Load(sdk); ok {
		return s.(*sampling), sdk
	}
	return nil, nil
}

// random is the source of the ids the middleware draws: math/rand/v2's
// global generator has per-thread state and takes no lock. Tests replace it
// with a seeded one.
var random = rand.Uint64

// decision is what the middleware does with a server span.
type decision uint8

const (
	useSDK       decision = iota // a local parent: the SDK decides
	sampleRemote                 // a remote parent whose trace is sampled
	sampleRoot                   // a sampled root: with a drawn trace id when the ratio decided it
	drop                         // not sampled: a non-recording span without the SDK
	dropRoot                     // drop for a root: its drawn trace id is in a rootID, not a span context
)

// decide applies the configured sampler to a server span under parent (the
// remote or local span context the request continues, or none). For roots
// it draws the trace id, as the SDK would: a sampled root gets it in the
// returned span context, a dropped one (dropRoot) only in the rootID, the
// span context staying invalid. Building span contexts to carry a dropped
// root's id, and copying them through decide's callers, was half of an
// unsampled root's decision (README.md, 2026-12-06); initRoot writes the
// span from the two halves. For a dropped child decide returns the parent.
func (s *sampling) decide(parent trace.SpanContext) (decision, trace.SpanContext, rootID) {
	if parent.IsValid() {
		switch {
		case !parent.IsRemote():
			// A span of this process: the SDK tracks its children.
			return useSDK, parent, rootID{}
		case !s.dropsRemote(parent):
			return sampleRemote, parent, rootID{}
		}
		return drop, parent, rootID{}
	}
	d, r := s.decideRoot()
	if d == sampleRoot && r != (rootID{}) {
		return sampleRoot, r.parent(), r
	}
	return d, parent, r
}

// dropsRemote reports whether decide drops a span under parent, a valid
// remote span context: under parentbased_* when the caller did not sample
// it, otherwise when the ratio rejects its trace id.
func (s *sampling) dropsRemote(parent trace.SpanContext) bool {
	return s.dropsParent(parent.TraceID(), parent.TraceFlags())
}

// dropsParent is dropsRemote for a remote parent's trace id and flags.
func (s *sampling) dropsParent(tid trace.TraceID, flags trace.TraceFlags) bool {
	if s.parentBased {
		return !flags.IsSampled()
	}
	return !s.sampled(tid)
}

// decideRoot is decide for a span with no parent at all: sampleRoot for
// every root (and no drawn id) when the ratio is 1, otherwise the drawn
// trace id and whether the ratio samples it. It builds no span context,
// which ServerTracer.decide relies on for the requests that carry no
// traceparent.
func (s *sampling) decideRoot() (decision, rootID) {
	if s.all {
		return sampleRoot, rootID{}
	}
	r := drawRootID()
	if s.sampledLow(r.lo) {
		return sampleRoot, r
	}
	return dropRoot, r
}

// rootID is a drawn trace id as its two halves, high first: the ratio
// reads the low one, and a dropped root's span is written from both.
type rootID struct{ hi, lo uint64 }

// drawRootID, newTraceID and newSpanID draw until the id is not all zeros
// (invalid), which for 128 or 64 random bits is as good as never a second
// time.
func drawRootID() rootID {
	for {
		if hi, lo := random(), random(); hi|lo != 0 {
			return rootID{hi, lo}
		}
	}
}

// traceID is the trace id, big-endian as the SDK's generator fills it.
func (r rootID) traceID() (tid trace.TraceID) {
	binary.BigEndian.PutUint64(tid[:8], r.hi)
	binary.BigEndian.PutUint64(tid[8:], r.lo)
	return tid
}

// parent is the span context a sampled root with a drawn id starts
// under: invalid (no span id), carrying the trace id for the span to take.
func (r rootID) parent() trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: r.traceID()})
}

func newTraceID() trace.TraceID { return drawRootID().traceID() }

func newSpanID() trace.SpanID {
	for {
		if v := random(); v != 0 {
			var sid trace.SpanID
			binary.BigEndian.PutUint64(sid[:], v)
			return sid
		}
	}
}

// noSpanIn reports whether ctx certainly holds no span (one Value lookup
// under the learnt spanKey), so that a span started in it without a remote
// parent is a root. False when spanKey could not be learnt.
func noSpanIn(ctx context.Context) bool { return spanKey != nil && ctx.Value(spanKey) == nil }

// spanContextOf is trace.SpanContextFromContext(ctx) without its detour,
// when ctx holds no span (most requests), through the no-op span's
// SpanContext method.
func spanContextOf(ctx context.Context) trace.SpanContext {
	if spanKey == nil || ctx == nil {
		return trace.SpanContextFromContext(ctx)
	}
	if s, ok := ctx.Value(spanKey).(trace.Span); ok {
		return s.SpanContext()
	}
	return trace.SpanContext{}
}

// unsampledCtx is the request context of a request that is not sampled and
// the non-recording span in it, in one allocation where trace.ContextWithSpan
// takes two (the context node and the span it boxes). Like the SDK's
// non-recording span, the span carries the ids (logs and outgoing
// traceparent headers use them, and flags 00 tell the next service not to
// sample) and its tracer provider, which some instrumentation starts
// children with.
//
// It is 48 bytes: with the 304 of the http.Request copy it shares an
// allocation with (unsampledRequest), 352, the size class below the 384 it
// took with the flags, the trace state and the provider held here (and
// trace.Span's marker, an interface, embedded by value). Those rarely vary,
// so they sit in an unsampledExt shared by the tracer's spans, which also
// leaves three pointer words for the GC to scan instead of six.
type unsampledCtx struct {
	context.Context // the parent
	*unsampledExt   // never nil once init has run
	tid             trace.TraceID
	sid             trace.SpanID
}

// unsampledExt is what an unsampled span has beyond its ids. A tracer
// shares one per flags value the traceparent parsers let through with an
// empty trace state (unsampledExts); any other span has one of its own.
type unsampledExt struct {
	embedded.Span // trace.Span's marker, promoted to unsampledCtx through the pointer
	tp            *sdktrace.TracerProvider
	state         trace.TraceState
	flags         trace.TraceFlags
}

// unsampledExts are a tracer's shared unsampledExts, indexed by the flags
// without "sampled": none, and random (FlagsRandom is 2).
type unsampledExts [2]unsampledExt

func newUnsampledExts(tp *sdktrace.TracerProvider) unsampledExts {
	return unsampledExts{{tp: tp}, {tp: tp, flags: trace.FlagsRandom}}
}

func (c *unsampledCtx) SpanContext() trace.SpanContext {
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: c.tid, SpanID: c.sid, TraceFlags: c.flags, TraceState: c.state,
	})
}

func (c *unsampledCtx) TracerProvider() trace.TracerProvider  { return c.tp }
func (*unsampledCtx) IsRecording() bool                       { return false }
func (*unsampledCtx) End(...trace.SpanEndOption)              {}
func (*unsampledCtx) AddEvent(string, ...trace.EventOption)   {}
func (*unsampledCtx) AddLink(trace.Link)                      {}
func (*unsampledCtx) RecordError(error, ...trace.EventOption) {}
func (*unsampledCtx) SetStatus(codes.Code, string)            {}
func (*unsampledCtx) SetName(string)                          {}
func (*unsampledCtx) SetAttributes(...attribute.KeyValue)     {}

// String names the context as context.WithValue's do (they print their
// parents), instead of fmt printing every field of the chain.
func (c *unsampledCtx) String() string { return fmt.Sprint(c.Context) + ".WithUnsampledSpan" }

// Value answers trace.SpanFromContext with the span; every other key goes to
// the parent.
func (c *unsampledCtx) Value(key any) any {
	if key == spanKey {
		return trace.Span(c)
	}
	return c.Context.Value(key)
}

// withUnsampled returns ctx with the span the SDK would give a span it drops
// under parent, and the span: the parent's trace id and trace state (or the
// drawn trace id of a root), a fresh span id, the parent's flags without
// "sampled", not remote. shared are its tracer's unsampledExts.
func withUnsampled(ctx context.Context, parent trace.SpanContext, shared *unsampledExts) (context.Context, trace.Span) {
	c := new(unsampledCtx)
	return c.init(ctx, parent, shared, nil), c
}

// init makes c the span withUnsampled describes and returns the context
// holding it (c itself, unless spanKey could not be learnt). It lets a
// caller place the span inside a larger allocation (unsampledRequest) or
// storage of its own (UnsampledSpan). A span that cannot use one of shared
// (a non-empty trace state, unusual flags) keeps its own in *own, or in an
// allocation of its own when own is nil.
func (c *unsampledCtx) init(ctx context.Context, parent trace.SpanContext, shared *unsampledExts, own *unsampledExt) context.Context {
	return c.initFrom(ctx, parent.TraceID(), parent.TraceFlags(), parent.TraceState(), shared, own)
}

// initFrom is init from the parent's trace id, flags and trace state, as
// the middleware reads them from a traceparent header.
func (c *unsampledCtx) initFrom(ctx context.Context, tid trace.TraceID, flags trace.TraceFlags, state trace.TraceState, shared *unsampledExts, own *unsampledExt) context.Context {
	ext := own
	flags &^= trace.FlagsSampled
	if state.Len() == 0 && flags&^trace.FlagsRandom == 0 {
		ext = &shared[flags>>1&1]
	} else {
		if ext == nil {
			ext = new(unsampledExt)
		}
		*ext = unsampledExt{tp: shared[0].tp, state: state, flags: flags}
	}
	// Every field, one by one: assigning a composite literal builds it on
	// the stack and copies it in with a bulk write barrier.
	c.Context, c.unsampledExt, c.tid, c.sid = ctx, ext, tid, newSpanID()
	if spanKey == nil {
		return trace.ContextWithSpan(ctx, c)
	}
	return c
}

// initRoot is init for a root the sampler dropped (dropRoot): no parent
// span context, so no trace state and flags 00 (the tracer's shared
// unsampledExt), and the trace id decide drew.
func (c *unsampledCtx) initRoot(ctx context.Context, r rootID, shared *unsampledExts) context.Context {
	c.Context, c.unsampledExt = ctx, &shared[0]
	binary.BigEndian.PutUint64(c.tid[:8], r.hi)
	binary.BigEndian.PutUint64(c.tid[8:], r.lo)
	c.sid = newSpanID()
	if spanKey == nil {
		return trace.ContextWithSpan(ctx, c)
	}
	return c
}

// spanKey is the context key under which go.opentelemetry.io/otel/trace
// keeps the current span. The package does not export it, so it is learnt
// once from a context that records what SpanFromContext looks up, and kept
// only if a span stored by trace.ContextWithSpan is found under it (nil
// otherwise: withUnsampled then uses trace.ContextWithSpan, one allocation
// more). TestSpanKey fails if a new otel version breaks this.
var spanKey = func() any {
	p := &keyProbe{Context: context.Background()}
	trace.SpanFromContext(p)
	if len(p.keys) != 1 {
		return nil
	}
	want := &unsampledCtx{Context: context.Background()}
	if got, ok := trace.ContextWithSpan(context.Background(), want).Value(p.keys[0]).(*unsampledCtx); !ok || got != want {
		return nil
	}
	return p.keys[0]
}()

type keyProbe struct {
	context.Context
	keys []any
}

func (p *keyProbe) Value(key any) any {
	p.keys = append(p.keys, key)
	return p.Context.Value(key)
}

// rootIDs is the context a sampled root is started in: its parent plus the
// trace id the middleware drew, which the ID generator hands to the SDK (one
// allocation, where context.WithValue would box the id in a second). The id
// is taken once: a span started later with the same context as a new root
// (trace.WithNewRoot) gets ids of its own.
type rootIDs struct {
	context.Context
	tid   trace.TraceID
	taken atomic.Bool
}

type rootIDsKey struct{}

func (r *rootIDs) String() string { return fmt.Sprint(r.Context) + ".WithRootIDs" }

func (r *rootIDs) Value(key any) any {
	if key == (rootIDsKey{}) {
		return r
	}
	return r.Context.Value(key)
}

// needsIDs says whether the middleware may draw root trace ids for the SDK:
// only a ratio strictly between 0 and 1 samples some roots by trace id.
func (s *sampling) needsIDs() bool { return !s.all && s.bound > 0 }

// idGenerator is the SDK's random generator (math/rand/v2) that also honours
// rootIDs. Setup installs it only where needsIDs: looking for rootIDs costs
// every root a walk up its context.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if r, ok := ctx.Value(rootIDsKey{}).(*rootIDs); ok && r.taken.CompareAndSwap(false, true) {
		return r.tid, newSpanID()
	}
	return newTraceID(), newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }
