package proxy

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
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
