package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// sdkTwin is a ServerTracer of the same provider and scope that starts
// every span through the SDK, as ServerTracer did before serverspan.go.
func sdkTwin(st *ServerTracer) *ServerTracer {
	twin := *st
	s := *st.sampling
	s.rec = nil
	twin.sampling = &s
	return &twin
}

// checkSpans compares an exported span recorded without the SDK with the
// SDK's span of the same calls, field by field. Span ids are drawn, so only
// their validity is compared, and a root's trace id too.
func checkSpans(t *testing.T, got, want sdktrace.ReadOnlySpan, root bool) {
	t.Helper()
	checkSpansEvents(t, got, want, root, got.Events(), want.Events())
}

// checkSpansEvents is checkSpans with the events to compare given.
func checkSpansEvents(t *testing.T, got, want sdktrace.ReadOnlySpan, root bool, gotEvents, wantEvents []sdktrace.Event) {
	t.Helper()
	if _, ok := got.(*serverSpan); !ok {
		t.Fatalf("got a %T, want the span recorded without the SDK", got)
	}
	if _, ok := want.(*serverSpan); ok {
		t.Fatal("the SDK twin recorded without the SDK")
	}
	gsc, wsc := got.SpanContext(), want.SpanContext()
	if !gsc.SpanID().IsValid() || gsc.SpanID() == got.Parent().SpanID() {
		t.Errorf("span id %s", gsc.SpanID())
	}
	if root && !gsc.TraceID().IsValid() || !root && gsc.TraceID() != wsc.TraceID() {
		t.Errorf("trace id %s, the SDK's %s", gsc.TraceID(), wsc.TraceID())
	}
	same := func(field string, g, w any) {
		t.Helper()
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s:\n got %#v\nwant %#v", field, g, w)
		}
	}
	same("flags", gsc.TraceFlags(), wsc.TraceFlags())
	same("trace state", gsc.TraceState().String(), wsc.TraceState().String())
	same("remote", gsc.IsRemote(), wsc.IsRemote())
	same("name", got.Name(), want.Name())
	same("kind", got.SpanKind(), want.SpanKind())
	same("parent", got.Parent(), want.Parent())
	same("start", got.StartTime(), want.StartTime())
	same("end", got.EndTime(), want.EndTime())
	same("attributes", got.Attributes(), want.Attributes())
	same("dropped attributes", got.DroppedAttributes(), want.DroppedAttributes())
	same("events", gotEvents, wantEvents)
	same("dropped events", got.DroppedEvents(), want.DroppedEvents())
	same("links", got.Links(), want.Links())
	same("dropped links", got.DroppedLinks(), want.DroppedLinks())
	same("status", got.Status(), want.Status())
	same("scope", got.InstrumentationScope(), want.InstrumentationScope())
	same("resource", got.Resource().Equivalent(), want.Resource().Equivalent())
	same("resource schema", got.Resource().SchemaURL(), want.Resource().SchemaURL())
}

// TestServerSpanMatchesSDK: the span recorded without the SDK is exported
// with the same fields as the SDK's span of the same calls, for a remote
// parent and a root, with attributes set twice, invalid ones, events, an
// error, links, a status and a name change, under default and small limits.
func TestServerSpanMatchesSDK(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 21, 0, 0, 0, time.UTC)
	state, _ := trace.ParseTraceState("k=v")
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0xf0, 7}, TraceFlags: trace.FlagsSampled,
		TraceState: state, Remote: true,
	})
	link := trace.Link{SpanContext: remote, Attributes: []attribute.KeyValue{attribute.Int("a", 1), attribute.Int("b", 2)}}
	calls := func(span trace.Span, i int) {
		span.SetAttributes(attribute.String("http.route", "/r"), attribute.Int("n", i), attribute.String("", "invalid"))
		span.SetAttributes(attribute.Int("n", i+1), attribute.StringSlice("s", []string{"x", "y"}))
		span.AddEvent("e", trace.WithTimestamp(t0.Add(time.Millisecond)), trace.WithAttributes(attribute.Bool("b", true), attribute.Int("c", 3)))
		span.RecordError(fmt.Errorf("wrapped: %w", errors.New("boom")), trace.WithTimestamp(t0.Add(2*time.Millisecond)))
		span.RecordError(nil)
		span.AddLink(link)
		span.AddLink(trace.Link{})
		span.SetStatus(codes.Error, "bad")
		span.SetStatus(codes.Unset, "")
		if i%2 == 1 {
			span.SetStatus(codes.Ok, "ignored")
		}
		span.SetName(fmt.Sprintf("renamed %d", i))
		span.End(trace.WithTimestamp(t0.Add(time.Second)))
		span.SetAttributes(attribute.Int("after", 1)) // ignored after End
		span.AddEvent("after")
		span.End()
	}
	limits := []map[string]string{
		{},
		{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "2", "OTEL_SPAN_EVENT_COUNT_LIMIT": "1", "OTEL_SPAN_LINK_COUNT_LIMIT": "0",
			"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT": "1"},
		{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "0", "OTEL_SPAN_EVENT_COUNT_LIMIT": "0", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT": "1"},
	}
	for _, env := range limits {
		t.Run(fmt.Sprint(env), func(t *testing.T) {
			for k, v := range env {
				t.Setenv(k, v)
			}
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
			st, ended := serverTracerWith(t, "parentbased_always_on", "")
			if st.sampling.rec == nil {
				t.Fatal("Setup's provider records server spans with the SDK")
			}
			twin := sdkTwin(st)
			opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0),
				trace.WithAttributes(attribute.String("at.start", "1")), trace.WithLinks(link)}
			for i, parent := range []trace.SpanContext{remote, {}} {
				_, got := st.Start(context.Background(), parent, "GET /r", opts...)
				calls(got, i)
				_, want := twin.Start(context.Background(), parent, "GET /r", opts...)
				calls(want, i)
				spans := ended()
				checkSpans(t, spans[len(spans)-2], spans[len(spans)-1], !parent.IsValid())
			}
		})
	}
}

// TestServerSpanPanicAtEnd: an End deferred while a handler panics records
// the panic as the SDK does and lets it continue.
func TestServerSpanPanicAtEnd(t *testing.T) {
	st, ended := serverTracerWith(t, "always_on", "")
	t0 := time.Now()
	run := func(st *ServerTracer) (v any) {
		defer func() { v = recover() }()
		_, span := st.Start(context.Background(), trace.SpanContext{}, "p", trace.WithTimestamp(t0))
		defer span.End(trace.WithTimestamp(t0.Add(time.Second)))
		panic("handler failed")
	}
	if v := run(st); v != "handler failed" {
		t.Fatalf("recovered %v", v)
	}
	if v := run(sdkTwin(st)); v != "handler failed" {
		t.Fatalf("recovered %v", v)
	}
	spans := ended()
	// The event's time is the SDK's clock reading at End.
	untimed := func(s sdktrace.ReadOnlySpan) []sdktrace.Event {
		ev := s.Events()
		for i := range ev {
			if ev[i].Time.Before(t0) || ev[i].Time.After(time.Now()) {
				t.Errorf("event time %v", ev[i].Time)
			}
			ev[i].Time = time.Time{}
		}
		return ev
	}
	checkSpansEvents(t, spans[0], spans[1], true, untimed(spans[0]), untimed(spans[1]))
}

// TestServerSpanMiddleware: through Middleware a sampled request gets the
// span recorded without the SDK; a handler's child span is an SDK span
// under it, and the handler can read, add to and mark the server span.
func TestServerSpanMiddleware(t *testing.T) {
	_, rec, _ := setup(t)
	e := gin.New()
	e.Use(Middleware())
	var child trace.SpanContext
	e.GET("/orders/:id", func(c *gin.Context) {
		ctx := c.Request.Context()
		span := trace.SpanFromContext(ctx)
		if !span.IsRecording() || !span.SpanContext().IsSampled() {
			t.Error("the server span does not record")
		}
		span.SetAttributes(attribute.String("order.id", c.Param("id")))
		span.AddEvent("looked up")
		_, cs := span.TracerProvider().Tracer("child").Start(ctx, "db")
		child = cs.SpanContext()
		cs.End()
		c.Status(http.StatusOK)
	})
	req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	e.ServeHTTP(httptest.NewRecorder(), req)
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans ended, want the child and the server span", len(spans))
	}
	db, srv := spans[0], spans[1]
	if _, ok := srv.(*serverSpan); !ok {
		t.Fatalf("server span is a %T", srv)
	}
	if db.Parent().SpanID() != srv.SpanContext().SpanID() || db.SpanContext().TraceID() != srv.SpanContext().TraceID() ||
		!db.SpanContext().Equal(child) || !child.IsSampled() {
		t.Errorf("child %v under %v, want it under the server span %v", db.SpanContext(), db.Parent(), srv.SpanContext())
	}
	if srv.Parent().SpanID().String() != "00f067aa0ba902b7" || !srv.Parent().IsRemote() {
		t.Errorf("server span parent %v", srv.Parent())
	}
	if a := attrs(srv); a["order.id"].AsString() != "42" || a["http.response.status_code"].AsInt64() != 200 ||
		a["http.route"].AsString() != "/orders/:id" || len(srv.Events()) != 1 {
		t.Errorf("attributes %v, events %v", srv.Attributes(), srv.Events())
	}
	if len(rec.Started()) != 2 {
		t.Errorf("%d spans started, want the processors to see both starts", len(rec.Started()))
	}
}

// TestServerSpanMiddlewareMatchesSDK: through Middleware the span has the
// attributes, status, events and dropped count the SDK's span of the same
// request has, also when the count limit cuts the middleware's attributes.
func TestServerSpanMiddlewareMatchesSDK(t *testing.T) {
	for _, limit := range []string{"128", "3"} {
		t.Run(limit, func(t *testing.T) {
			t.Setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", limit)
			_, rec, _ := setup(t)
			var spans []sdktrace.ReadOnlySpan
			for _, viaSDK := range []bool{false, true} {
				e := gin.New()
				e.Use(Middleware(func(m *middleware) { m.viaSDK = viaSDK }))
				e.GET("/orders/:id", func(c *gin.Context) {
					span := trace.SpanFromContext(c.Request.Context())
					span.SetAttributes(attribute.String("order.id", c.Param("id")), attribute.String("url.path", "shadowed"))
					_ = c.Error(errors.New("upstream down"))
					c.Status(http.StatusBadGateway)
				})
				req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
				req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
				e.ServeHTTP(httptest.NewRecorder(), req)
				ended := rec.Ended()
				spans = append(spans, ended[len(ended)-1])
			}
			got, want := spans[0], spans[1]
			if _, ok := got.(*serverSpan); !ok {
				t.Fatalf("got a %T", got)
			}
			if !reflect.DeepEqual(got.Attributes(), want.Attributes()) || got.DroppedAttributes() != want.DroppedAttributes() ||
				got.Status() != want.Status() || got.Name() != want.Name() || got.SpanKind() != want.SpanKind() ||
				!got.Parent().Equal(want.Parent()) || len(got.Events()) != 1 || !reflect.DeepEqual(got.Events()[0].Attributes, want.Events()[0].Attributes) {
				t.Fatalf("got %s %v (%d dropped) %v %v\nwant %s %v (%d dropped) %v %v",
					got.Name(), got.Attributes(), got.DroppedAttributes(), got.Status(), got.Events(),
					want.Name(), want.Attributes(), want.DroppedAttributes(), want.Status(), want.Events())
			}
		})
	}
}

// TestServerSpanFlushedAtShutdown: every sampled request's span reaches the
// exporter through the batch processor when the provider shuts down, and
// none is handed over after.
func TestServerSpanFlushedAtShutdown(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv(envSampler, "always_on")
	exp := &keepExporter{}
	p, err := Setup(context.Background(), Options{ServiceName: "flush",
		SpanProcessors: []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(exp, sdktrace.WithBatchTimeout(time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}
	e := gin.New()
	e.Use(Middleware(WithTracerProvider(p.Tracer)))
	e.GET("/x", func(c *gin.Context) { c.Status(http.StatusOK) })
	const n = 1000
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range n / 4 {
				e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
			}
		})
	}
	wg.Wait()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := exp.get()
	if len(spans) != n {
		t.Fatalf("%d spans exported, want %d", len(spans), n)
	}
	seen := map[trace.SpanID]bool{}
	for _, s := range spans {
		if seen[s.SpanContext().SpanID()] || s.Name() != "GET /x" || s.EndTime().Before(s.StartTime()) {
			t.Fatalf("span %+v", s)
		}
		seen[s.SpanContext().SpanID()] = true
	}
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil))
	if len(exp.get()) != n {
		t.Fatal("a span was handed over after Shutdown")
	}
}

// keepExporter keeps what it exports, also after Shutdown (tracetest's
// InMemoryExporter forgets everything at Shutdown).
type keepExporter struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (k *keepExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.spans = append(k.spans, spans...)
	return nil
}

func (*keepExporter) Shutdown(context.Context) error { return nil }

func (k *keepExporter) get() []sdktrace.ReadOnlySpan {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]sdktrace.ReadOnlySpan(nil), k.spans...)
}

// TestServerSpanConcurrentUse: the span is safe to use from the handler's
// goroutines while processors read it (run with -race).
func TestServerSpanConcurrentUse(t *testing.T) {
	st, ended := serverTracerWith(t, "always_on", "")
	_, span := st.Start(context.Background(), trace.SpanContext{}, "c")
	ro := span.(sdktrace.ReadOnlySpan)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 100 {
				span.SetAttributes(attribute.Int(fmt.Sprint("k", j%10), i))
				span.AddEvent("e")
				_ = ro.Attributes()
				_ = ro.Events()
				_ = span.IsRecording()
			}
		})
	}
	wg.Go(func() { time.Sleep(time.Millisecond); span.End() })
	wg.Wait()
	got := ended()
	if len(got) != 1 || len(got[0].Attributes()) > 10 {
		t.Fatalf("ended %d spans, attributes %v", len(got), got)
	}
}

// TestServerSpanReadOnly: every method of sdktrace.ReadOnlySpan is the
// span's own. The span embeds a nil ReadOnlySpan for the interface's
// unexported marker, so a method a new SDK version adds would be promoted
// from nil and panic; this fails first.
func TestServerSpanReadOnly(t *testing.T) {
	st, _ := serverTracerWith(t, "always_on", "")
	_, span := st.Start(context.Background(), trace.SpanContext{}, "r")
	span.End()
	v := reflect.ValueOf(span)
	it := reflect.TypeFor[sdktrace.ReadWriteSpan]()
	for i := range it.NumMethod() {
		m := it.Method(i)
		if !m.IsExported() || m.Type.NumIn() > 0 {
			continue
		}
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: %v", m.Name, r)
				}
			}()
			v.MethodByName(m.Name).Call(nil)
		}()
	}
}

// TestServerSpanSize: the span stays in the allocator's header-less size
// classes (serverspan.go says why), and in the 320-byte one: every byte of
// a sampled request's three allocations is allocated, zeroed and swept again
// per request, and 336 bytes took the 352-byte class.
func TestServerSpanSize(t *testing.T) {
	if n := unsafe.Sizeof(serverSpan{}); n > 320 {
		t.Fatalf("serverSpan is %d bytes, want at most 320", n)
	}
}

// TestServerSpanNotWithValueLengthLimit: truncation is the SDK's internal
// code, so with a value length limit the SDK records every span.
func TestServerSpanNotWithValueLengthLimit(t *testing.T) {
	t.Setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8")
	st, ended := serverTracerWith(t, "always_on", "")
	_, span := st.Start(context.Background(), trace.SpanContext{}, "l")
	span.SetAttributes(attribute.String("long", "0123456789"))
	span.End()
	got := ended()
	if _, ours := got[0].(*serverSpan); ours || got[0].Attributes()[0].Value.AsString() != "01234567" {
		t.Fatalf("%T %v", got[0], got[0].Attributes())
	}
}

// TestStartChildMatchesSDK: a child of a recording server span is recorded
// without the SDK and exports as the SDK's child of the same span would
// (parent, trace id and state, flags, kind, attributes, events, status);
// a child of anything else is the SDK's.
func TestStartChildMatchesSDK(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 22, 0, 0, 0, time.UTC)
	state, _ := trace.ParseTraceState("k=v")
	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 2}, SpanID: trace.SpanID{0xf0, 8}, TraceFlags: trace.FlagsSampled,
		TraceState: state, Remote: true,
	})
	client := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(t0)}
	for _, sampler := range []string{"parentbased_always_on", "traceidratio", "always_on"} {
		t.Run(sampler, func(t *testing.T) {
			st, ended := serverTracerWith(t, sampler, "1")
			twin := sdkTwin(st)
			ctx, server := st.Start(context.Background(), remote, "GET /orders")
			if _, ok := server.(*serverSpan); !ok {
				t.Fatalf("server span is a %T", server)
			}
			for _, tr := range []*ServerTracer{st, twin} {
				cctx, call := tr.StartChild(ctx, "order", client...)
				if trace.SpanFromContext(cctx) != call {
					t.Fatal("the child's context does not hold the child")
				}
				call.SetAttributes(attribute.String("server.address", "127.0.0.1:1"), attribute.Int("http.response.status_code", 502))
				call.RecordError(errors.New("boom"), trace.WithTimestamp(t0.Add(time.Millisecond)))
				call.SetStatus(codes.Error, "boom")
				call.End(trace.WithTimestamp(t0.Add(time.Second)))
			}
			spans := ended()
			got, want := spans[len(spans)-2], spans[len(spans)-1]
			checkSpans(t, got, want, false)
			if !got.Parent().Equal(server.SpanContext()) || !want.Parent().Equal(server.SpanContext()) {
				t.Errorf("parents %v and %v, want the server span %v", got.Parent(), want.Parent(), server.SpanContext())
			}
			if got.SpanContext().TraceID() != remote.TraceID() {
				t.Errorf("trace id %s, want the remote parent's", got.SpanContext().TraceID())
			}
			server.End()

			// No recording parent of ours: the SDK's span.
			_, sdkParent := st.tracer.Start(context.Background(), "local")
			_, call := st.StartChild(trace.ContextWithSpan(context.Background(), sdkParent), "order", client...)
			if _, ok := call.(*serverSpan); ok {
				t.Error("a child of the SDK's span was recorded without the SDK")
			}
			if call.SpanContext().TraceID() != sdkParent.SpanContext().TraceID() {
				t.Error("the SDK child left its parent's trace")
			}
		})
	}
}

// TestUnsampledSpanSize: an unsampled request's span takes 48 bytes of its
// request copy's allocation, which with net/http's 304-byte Request (Go
// 1.26) is the 352-byte size class, not 384 (sampling.go says why).
func TestUnsampledSpanSize(t *testing.T) {
	if n := unsafe.Sizeof(unsampledCtx{}); n > 48 {
		t.Fatalf("unsampledCtx is %d bytes, want at most 48", n)
	}
}
