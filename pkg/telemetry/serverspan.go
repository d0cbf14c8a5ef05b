package telemetry

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Why a recording span is written by hand here: issue 2 asks for at most
// 1.5 µs per sampled request above bare gin, and one SDK span with the six
// attributes through the batch processor costs 2.1-2.3 µs of CPU with no
// HTTP at all (README.md, BenchmarkSDKSpanWays: none of the SDK's other
// ways is cheaper). Most of that is work a server span does not need: Start
// copies the start options and allocates the span and its context node,
// SetAttributes copies and normalises every attribute, and End copies the
// whole span into a snapshot (de-duplicating the attributes through a fresh
// map) for the processors. The server span that Middleware and ServerTracer
// start is one allocation instead (the span is its own context node, its
// attributes sit in a fixed array), and it is handed to the processors as
// it is: after End nothing changes it, so it serves as its own read-only
// snapshot.
//
// It is used only on a tracer provider Setup built, where every span
// processor is known (Setup registered them), and only for spans the SDK
// would record: sampled server spans that continue a remote parent or start
// a trace. It behaves as the SDK's span does (TestServerSpanMatchesSDK
// exports the same requests both ways and compares every field), with the
// SDK's limits, its rules for attributes (last value of a key wins, count
// limit, invalid ones dropped), status, events, links, RecordError and a
// panic seen by End. What differs, and why it does not matter here:
//
//   - ChildSpanCount stays 0: the SDK counts a child only under a parent of
//     its own type. OTLP does not carry the count.
//   - Processors' OnStart gets the request's context without the caller's
//     span context in it (the span's Parent has it); the SDK's processors and
//     the test recorders do not read it.
//   - Keys inside MAP-valued attributes are not de-duplicated (the SDK's
//     normaliser is internal). Setup keeps the SDK path when
//     OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT is set, since truncation is
//     the same internal code.
//   - With runtime/trace enabled the SDK opens a task per span; this span
//     does not.
//   - Processors registered on Provider.Tracer after Setup do not see these
//     spans: pass them in Options.SpanProcessors.

// recorder is what a server span needs from the provider Setup built.
type recorder struct {
	res     *resource.Resource
	limits  sdktrace.SpanLimits
	procs   []sdktrace.SpanProcessor // in the order the provider calls them
	stopped atomic.Bool              // the provider is shut down: processors see no more spans
}

// newRecorder returns the recorder for a provider built with these
// processors and resource, or nil when the SDK must record every span.
func newRecorder(res *resource.Resource, procs []sdktrace.SpanProcessor) *recorder {
	limits := sdktrace.NewSpanLimits()
	if limits.AttributeValueLengthLimit >= 0 {
		return nil
	}
	// The SDK's WithResource merges the environment's resource first.
	merged, err := resource.Merge(resource.Environment(), res)
	if err != nil {
		return nil
	}
	return &recorder{res: merged, limits: limits, procs: procs}
}

func (r *recorder) processors() []sdktrace.SpanProcessor {
	if r.stopped.Load() {
		return nil
	}
	return r.procs
}

// serverSpan is a recording server span and the request context holding it.
// It is kept at most 512 bytes, the largest object the Go allocator places
// without a type header of its own (measured: a 1 KiB span with the
// attributes inline took a third more CPU per request than this one and a
// separate attribute slice), and at 312 in the 320-byte size class.
type serverSpan struct {
	context.Context // the parent
	*spanMarkers    // always &markers
	t               *ServerTracer
	sc, parent      trace.SpanContext
	start           time.Time
	kind            trace.SpanKind // this and the fields above are not changed after start

	mu      sync.Mutex
	ended   bool
	dirty   bool // attrs may hold a key twice
	name    string
	end     time.Time
	status  sdktrace.Status
	attrs   []attribute.KeyValue
	dropped int
	more    *spanEvents // events and links, which server spans rarely have
}

// spanMarkers gives serverSpan the unexported marker methods of trace.Span
// and sdktrace.ReadOnlySpan, which only embedding those interfaces supplies.
// Embedded by value they took 32 bytes of every span, the step from the
// 320-byte size class to the 352-byte one; reached through a pointer to one
// shared value they take 8. The ReadOnlySpan in it is nil: serverSpan
// defines every one of its methods but the marker (TestServerSpanReadOnly).
type spanMarkers struct {
	embedded.Span
	sdktrace.ReadOnlySpan
}

var markers spanMarkers

type spanEvents struct {
	events               []sdktrace.Event
	links                []sdktrace.Link
	droppedEv, droppedLk int
}

func (s *serverSpan) rec() *recorder { return s.t.sampling.rec }

// moreLocked returns s.more, allocating it. s.mu is held.
func (s *serverSpan) moreLocked() *spanEvents {
	if s.more == nil {
		s.more = new(spanEvents)
	}
	return s.more
}

// startServerSpan starts a sampled span under parent (a remote span
// context, or an invalid one for a root, whose trace id is tid or drawn
// here) and returns it; it is also the context to pass on. It does for the
// span what the SDK's Start does for a span its sampler records.
func startServerSpan(ctx context.Context, t *ServerTracer, parent trace.SpanContext, tid trace.TraceID,
	name string, kind trace.SpanKind, cfg *trace.SpanConfig,
) *serverSpan {
	s := &serverSpan{Context: ctx, spanMarkers: &markers, t: t, parent: parent, kind: kind, name: name}
	scc := trace.SpanContextConfig{TraceID: tid, SpanID: newSpanID(), TraceFlags: parent.TraceFlags() | trace.FlagsSampled}
	if parent.IsValid() {
		scc.TraceID = parent.TraceID()
		scc.TraceState = parent.TraceState()
	} else if !tid.IsValid() {
		scc.TraceID = newTraceID()
	}
	s.sc = trace.NewSpanContext(scc)
	if cfg != nil {
		s.kind = trace.ValidateSpanKind(cfg.SpanKind())
		s.start = cfg.Timestamp()
		for _, l := range cfg.Links() {
			s.AddLink(l)
		}
		s.SetAttributes(cfg.Attributes()...)
	}
	if s.start.IsZero() {
		s.start = time.Now()
	}
	for _, p := range t.sampling.rec.processors() {
		p.OnStart(ctx, s)
	}
	return s
}

// context returns the context holding s: s itself, unless the trace
// package's context key could not be learnt (spanKey).
func (s *serverSpan) context() context.Context {
	if spanKey == nil {
		return trace.ContextWithSpan(s.Context, s)
	}
	return s
}

// Value answers trace.SpanFromContext with the span; every other key goes
// to the parent.
func (s *serverSpan) Value(key any) any {
	if key == spanKey {
		return trace.Span(s)
	}
	return s.Context.Value(key)
}

func (s *serverSpan) String() string { return fmt.Sprint(s.Context) + ".WithServerSpan" }

// trace.Span

func (s *serverSpan) SpanContext() trace.SpanContext       { return s.sc }
func (s *serverSpan) TracerProvider() trace.TracerProvider { return s.t.sdk }

func (s *serverSpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

// End ends the span and hands it to the processors. As with the SDK, an End
// deferred while a panic unwinds records the panic as an exception event
// and lets it continue.
func (s *serverSpan) End(options ...trace.SpanEndOption) {
	et := s.start.Add(time.Since(s.start)) // monotonic, as the SDK's
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	cfg := trace.NewSpanEndConfig(options...)
	if recovered := recover(); recovered != nil {
		defer panic(recovered)
		attrs := []attribute.KeyValue{semconv.ExceptionType(typeStr(recovered)), semconv.ExceptionMessage(fmt.Sprint(recovered))}
		if cfg.StackTrace() {
			attrs = append(attrs, semconv.ExceptionStacktrace(stackTrace()))
		}
		s.addEvent(semconv.ExceptionEventName, trace.WithAttributes(attrs...))
	}
	s.end = cfg.Timestamp()
	if s.end.IsZero() {
		s.end = et
	}
	s.dedupe()
	s.ended = true
	s.mu.Unlock()
	for _, p := range s.rec().processors() {
		p.OnEnd(s)
	}
}

func (s *serverSpan) SetName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.name = name
	}
}

// SetStatus follows the SDK: Ok is final, Error overrides Unset, and only
// Error keeps a description.
func (s *serverSpan) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.status.Code > code {
		return
	}
	st := sdktrace.Status{Code: code}
	if code == codes.Error {
		st.Description = description
	}
	s.status = st
}

// SetAttributes follows the SDK: the last value of a key wins, invalid
// attributes are dropped and counted, and past the count limit new keys are
// dropped while existing keys still take their new values.
func (s *serverSpan) SetAttributes(kv ...attribute.KeyValue) {
	if len(kv) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	limit := s.rec().limits.AttributeCountLimit
	switch {
	case limit == 0:
		s.dropped += len(kv)
		return
	case limit > 0 && len(s.attrs)+len(kv) > limit:
		s.dedupe()
		for _, a := range kv {
			if !a.Valid() {
				s.dropped++
				continue
			}
			if i := indexOf(s.attrs, a.Key); i >= 0 {
				s.attrs[i] = a
			} else if len(s.attrs) >= limit {
				s.dropped++
			} else {
				s.attrs = append(s.attrs, a)
			}
		}
		return
	}
	s.attrs = slices.Grow(s.attrs, len(kv))
	for _, a := range kv {
		if !a.Valid() {
			s.dropped++
			continue
		}
		s.attrs = append(s.attrs, a)
		s.dirty = true
	}
}

// appendAttributes is SetAttributes of n valid attributes with distinct
// keys that add appends, written straight into the span's slice (no copy
// through a caller's buffer). It reports false, doing nothing, when the
// attribute count limit needs SetAttributes' rules.
func (s *serverSpan) appendAttributes(n int, add func([]attribute.KeyValue) []attribute.KeyValue) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit := s.rec().limits.AttributeCountLimit; limit >= 0 && len(s.attrs)+n > limit {
		return s.ended
	}
	if s.ended {
		return true
	}
	s.dirty = s.dirty || len(s.attrs) > 0
	s.attrs = add(slices.Grow(s.attrs, n))
	return true
}

// dedupe keeps the first position and the last value of every key, as the
// SDK's snapshot does. A span has a handful of attributes, so a linear
// search beats building a map. s.mu is held.
func (s *serverSpan) dedupe() {
	if !s.dirty {
		return
	}
	unique := s.attrs[:0]
	for _, a := range s.attrs {
		if i := indexOf(unique, a.Key); i >= 0 {
			unique[i] = a
		} else {
			unique = append(unique, a)
		}
	}
	clear(s.attrs[len(unique):])
	s.attrs = unique
	s.dirty = false
}

func indexOf(kv []attribute.KeyValue, k attribute.Key) int {
	for i := range kv {
		if kv[i].Key == k {
			return i
		}
	}
	return -1
}

func (s *serverSpan) AddEvent(name string, opts ...trace.EventOption) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.addEvent(name, opts...)
	}
}

// addEvent follows the SDK: the per-event attribute limit cuts the list,
// and past the event limit the oldest event is dropped. s.mu is held.
func (s *serverSpan) addEvent(name string, opts ...trace.EventOption) {
	c := trace.NewEventConfig(opts...)
	e := sdktrace.Event{Name: name, Attributes: c.Attributes(), Time: c.Timestamp()}
	if limit := s.rec().limits.AttributePerEventCountLimit; limit == 0 {
		e.DroppedAttributeCount, e.Attributes = len(e.Attributes), nil
	} else if limit > 0 && len(e.Attributes) > limit {
		e.DroppedAttributeCount, e.Attributes = len(e.Attributes)-limit, e.Attributes[:limit]
	}
	m := s.moreLocked()
	m.events, m.droppedEv = evict(m.events, e, s.rec().limits.EventCountLimit, m.droppedEv)
}

// evict appends v to q, dropping the oldest element at capacity (or v when
// the capacity is 0), as the SDK's evicted queue does.
func evict[T any](q []T, v T, capacity, dropped int) ([]T, int) {
	switch {
	case capacity == 0:
		return q, dropped + 1
	case capacity > 0 && len(q) == capacity:
		copy(q, q[1:])
		q = q[:len(q)-1]
		dropped++
	}
	return append(q, v), dropped
}

// RecordError adds the SDK's exception event for err.
func (s *serverSpan) RecordError(err error, opts ...trace.EventOption) {
	if err == nil || !s.IsRecording() {
		return
	}
	opts = append(opts, trace.WithAttributes(semconv.ExceptionType(typeStr(err)), semconv.ExceptionMessage(err.Error())))
	if c := trace.NewEventConfig(opts...); c.StackTrace() {
		opts = append(opts, trace.WithAttributes(semconv.ExceptionStacktrace(stackTrace())))
	}
	s.AddEvent(semconv.ExceptionEventName, opts...)
}

// typeStr names an error's type as the SDK does.
func typeStr(v any) string {
	t := reflect.TypeOf(v)
	if t.PkgPath() == "" && t.Name() == "" {
		return t.String()
	}
	return t.PkgPath() + "." + t.Name()
}

// stackTrace is the SDK's exception stack trace: the first 2 KiB of this
// goroutine's stack.
func stackTrace() string {
	b := make([]byte, 2048)
	return string(b[:runtime.Stack(b, false)])
}

func (s *serverSpan) AddLink(l trace.Link) {
	if !l.SpanContext.IsValid() && len(l.Attributes) == 0 && l.SpanContext.TraceState().Len() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	link := sdktrace.Link{SpanContext: l.SpanContext, Attributes: l.Attributes}
	if limit := s.rec().limits.AttributePerLinkCountLimit; limit == 0 {
		link.DroppedAttributeCount, link.Attributes = len(link.Attributes), nil
	} else if limit > 0 && len(link.Attributes) > limit {
		link.DroppedAttributeCount, link.Attributes = len(link.Attributes)-limit, link.Attributes[:limit]
	}
	m := s.moreLocked()
	m.links, m.droppedLk = evict(m.links, link, s.rec().limits.LinkCountLimit, m.droppedLk)
}

// sdktrace.ReadOnlySpan: what the processors and exporters read. After End
// the span does not change, so what these return is not copied then.

func (s *serverSpan) Name() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.name
}

func (s *serverSpan) Parent() trace.SpanContext { return s.parent }
func (s *serverSpan) SpanKind() trace.SpanKind  { return s.kind }
func (s *serverSpan) StartTime() time.Time      { return s.start }

func (s *serverSpan) EndTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.end
}

func (s *serverSpan) Attributes() []attribute.KeyValue {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		if len(s.attrs) == 0 {
			return nil
		}
		return s.attrs
	}
	s.dedupe()
	return append([]attribute.KeyValue(nil), s.attrs...)
}

func (s *serverSpan) Links() []sdktrace.Link {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more == nil {
		return nil
	}
	if s.ended {
		return s.more.links
	}
	return append([]sdktrace.Link(nil), s.more.links...)
}

func (s *serverSpan) Events() []sdktrace.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more == nil {
		return nil
	}
	if s.ended {
		return s.more.events
	}
	return append([]sdktrace.Event(nil), s.more.events...)
}

func (s *serverSpan) Status() sdktrace.Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *serverSpan) InstrumentationScope() instrumentation.Scope { return s.t.scope }

// InstrumentationLibrary is part of sdktrace.ReadOnlySpan.
//
//lint:ignore SA1019 the interface still has it
func (s *serverSpan) InstrumentationLibrary() instrumentation.Library { return s.t.scope }

func (s *serverSpan) Resource() *resource.Resource { return s.rec().res }

func (s *serverSpan) DroppedAttributes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

func (s *serverSpan) DroppedLinks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more == nil || s.ended && len(s.more.links) == 0 {
		return 0 // as the SDK's snapshot: no count without a link
	}
	return s.more.droppedLk
}

func (s *serverSpan) DroppedEvents() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.more == nil || s.ended && len(s.more.events) == 0 {
		return 0 // as the SDK's snapshot: no count without an event
	}
	return s.more.droppedEv
}

// ChildSpanCount is 0: the SDK counts children only under its own spans.
func (s *serverSpan) ChildSpanCount() int { return 0 }
