package proxy

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// The upstream always continues the client's trace. A recorded trace gets a
// server and a client span, the upstream's parent being the client span; an
// unrecorded one gets no client span, and the upstream still sees the trace
// id, the unsampled flag and a span id of the gateway's (not the client's).
func TestTraceparentToUpstream(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())), sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}, Tracing: true}, up)
	const trace1, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, flags := range []string{"01", "00"} {
		ctx := serve(p, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\nTraceparent: 00-"+trace1+"-"+clientSpan+"-"+flags+"\r\n\r\n")
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("flags %s: status %d", flags, ctx.Response.StatusCode())
		}
		got := string(up.last.Load().Peek("Traceparent"))
		parts := strings.Split(got, "-")
		if len(parts) != 4 || parts[1] != trace1 || parts[2] == clientSpan || parts[3] != flags {
			t.Fatalf("flags %s: upstream traceparent %q, want trace %s, a gateway span id, flags %s", flags, got, trace1, flags)
		}
		ended := rec.Ended()
		if flags == "00" {
			if len(ended) != 2 { // only the sampled request's two spans
				t.Fatalf("unsampled request recorded spans: %d ended in total", len(ended))
			}
			continue
		}
		if len(ended) != 2 {
			t.Fatalf("sampled request: %d spans ended, want server and client", len(ended))
		}
		var server, client sdktrace.ReadOnlySpan
		for _, s := range ended {
			switch s.SpanKind() {
			case trace.SpanKindServer:
				server = s
			case trace.SpanKindClient:
				client = s
			}
		}
		if server == nil || client == nil || client.Parent().SpanID() != server.SpanContext().SpanID() ||
			client.SpanContext().SpanID().String() != parts[2] {
			t.Fatalf("sampled request: want upstream parent = client span, child of server span; upstream saw %q", got)
		}
	}
}

// With the provider telemetry.Setup builds at a 10% root ratio, a tenth of
// the requests is recorded (server and client span) and tells the upstream
// "sampled" with the client span as parent; every other request tells it
// "not sampled" in a trace of its own, and records nothing: the sampling
// the gateway applies is exactly the configured one, whether or not a
// request passes through the SDK.
func TestSampledShareWithSetup(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0.1")
	rec := tracetest.NewSpanRecorder()
	prevTP, prevMP := otel.GetTracerProvider(), otel.GetMeterProvider()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "gateway", SpanProcessors: []sdktrace.SpanProcessor{rec}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = tel.Shutdown(context.Background())
		otel.SetTracerProvider(prevTP)
		otel.SetMeterProvider(prevMP)
	})

	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}, Tracing: true}, up)
	ratio := sdktrace.TraceIDRatioBased(0.1)
	const n = 3000
	sampled := map[string]bool{} // client span ids the upstream was told were sampled
	traces := map[string]bool{}
	for range n {
		ctx := serve(p, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\n\r\n")
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d", ctx.Response.StatusCode())
		}
		sc := telemetry.ParseTraceparent(up.last.Load().Peek("Traceparent"), nil)
		if !sc.IsValid() || traces[sc.TraceID().String()] {
			t.Fatalf("upstream traceparent %q: want a valid one in a new trace", up.last.Load().Peek("Traceparent"))
		}
		traces[sc.TraceID().String()] = true
		want := ratio.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: sc.TraceID()})
		if sc.IsSampled() != (want.Decision == sdktrace.RecordAndSample) {
			t.Fatalf("trace %s: upstream told sampled=%v, the ratio sampler says %v", sc.TraceID(), sc.IsSampled(), want.Decision)
		}
		if sc.IsSampled() {
			sampled[sc.SpanID().String()] = true
		}
	}
	// Binomial(3000, 0.1): standard deviation 16.
	if len(sampled) < 230 || len(sampled) > 370 {
		t.Fatalf("%d of %d requests sampled, want about 300", len(sampled), n)
	}
	var clients, servers int
	for _, s := range rec.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindClient:
			clients++
			if !sampled[s.SpanContext().SpanID().String()] {
				t.Fatalf("client span %s was recorded but the upstream was not told it", s.SpanContext().SpanID())
			}
		case trace.SpanKindServer:
			servers++
		}
	}
	if clients != len(sampled) || servers != len(sampled) {
		t.Fatalf("recorded %d server and %d client spans for %d sampled requests", servers, clients, len(sampled))
	}
}

// Each attempt has its own client span, and the upstream it went to has
// that span as parent. The failed attempt's span says it failed (a 5xx is
// an error for a client span, by OpenTelemetry's HTTP conventions), and the
// retry's says it is one (http.request.resend_count): both looked like two
// healthy, unrelated calls.
func TestRetryHasItsOwnClientSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	bad, good := startUpstream(t), startUpstream(t)
	bad.status.Store(503)
	p, _ := newTestProxy(t, Options{Tracing: true, MaxAttempts: 2}, bad, good)
	for bad.hits.Load() == 0 { // P2C picks the failing instance first about half the time
		rec = tracetest.NewSpanRecorder()
		tp.RegisterSpanProcessor(rec)
		if ctx := serve(p, "GET /api/v1/products/1 HTTP/1.1\r\nHost: gw\r\n\r\n"); ctx.Response.StatusCode() != 200 {
			t.Fatalf("status %d", ctx.Response.StatusCode())
		}
		tp.UnregisterSpanProcessor(rec)
	}
	var clients []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindClient {
			clients = append(clients, s)
		}
	}
	if len(clients) != 2 {
		t.Fatalf("%d client spans for a request tried twice", len(clients))
	}
	first, retry := clients[0], clients[1]
	resend := func(s sdktrace.ReadOnlySpan) (int64, bool) {
		for _, a := range s.Attributes() {
			if a.Key == "http.request.resend_count" {
				return a.Value.AsInt64(), true
			}
		}
		return 0, false
	}
	if first.Status().Code != codes.Error {
		t.Errorf("the attempt answered 503: span status %v, want Error", first.Status())
	}
	if n, ok := resend(first); ok {
		t.Errorf("first attempt: http.request.resend_count %d, want none", n)
	}
	if n, ok := resend(retry); !ok || n != 1 {
		t.Errorf("retry: http.request.resend_count %d (set %v), want 1", n, ok)
	}
	if retry.Status().Code == codes.Error {
		t.Errorf("the retry answered 200: span status %v", retry.Status())
	}
	for _, c := range []struct {
		up   *fakeUpstream
		span sdktrace.ReadOnlySpan
	}{{bad, first}, {good, retry}} {
		sc := telemetry.ParseTraceparent(c.up.last.Load().Peek("Traceparent"), nil)
		if sc.SpanID() != c.span.SpanContext().SpanID() {
			t.Errorf("upstream %s saw parent %s, want its attempt's span %s", c.up.addr, sc.SpanID(), c.span.SpanContext().SpanID())
		}
	}
}
