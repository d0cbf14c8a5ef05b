package proxy

import (
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// linesOf returns the values of every field line named name (any case) the
// upstream got, in order.
func linesOf(u *fakeUpstream, name string) []string {
	var vals []string
	for k, v := range u.last.Load().All() {
		if strings.EqualFold(string(k), name) {
			vals = append(vals, string(v))
		}
	}
	return vals
}

// A field the gateway sets for the upstream goes on in one line, its own:
// fasthttp's Set replaces only the first line of a name, so a client's
// second X-Request-Timeout-Ms or X-Request-ID line went upstream beside the
// gateway's, for any reader that takes the last line (or the lines joined)
// to take the client's: a 50 s budget beside the gateway's 1 s, an id the
// gateway never checked beside the one it made.
func TestClientsSecondLineOfAGatewayFieldDoesNotReachUpstream(t *testing.T) {
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}}, up)
	const get = "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\n"

	// Two timeouts are one value "1, 50000" (RFC 9110 §5.3), no integer:
	// 400 bad-timeout, as for any other such value.
	for _, hdr := range []string{
		"X-Request-Timeout-Ms: 50000\r\nX-Request-Timeout-Ms: 1\r\n",
		"X-Request-Timeout-Ms: 1\r\nVia: a\r\nx-request-timeout-ms: 50000\r\n",
	} {
		before := up.hits.Load()
		ctx := serve(p, get+hdr+"\r\n")
		if ctx.Response.StatusCode() != 400 || !strings.Contains(string(ctx.Response.Body()), "bad-timeout") {
			t.Errorf("%q: %d %s, want 400 bad-timeout", hdr, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		if up.hits.Load() != before {
			t.Errorf("%q reached the upstream", hdr)
		}
	}

	// Two ids are no well-formed id: the gateway makes one, the only line
	// the upstream gets and the one the answer carries; the other fields
	// keep their order.
	for _, hdr := range []string{
		"X-Request-ID: aaaa-1\r\nVia: a\r\nVia: b\r\nX-Request-ID: bbbb-2\r\n",
		"X-Request-ID: bad id\r\nVia: a\r\nVia: b\r\nx-request-id: bbbb-2\r\n",
	} {
		ctx := serve(p, get+hdr+"\r\n")
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%q: %d %s", hdr, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		ids := linesOf(up, "X-Request-ID")
		answered := string(ctx.Response.Header.Peek("X-Request-Id"))
		if len(ids) != 1 || ids[0] != answered || strings.Contains(answered, "aaaa") || strings.Contains(answered, "bbbb") {
			t.Errorf("%q: upstream got X-Request-ID lines %q, the answer %q: want one, made by the gateway, the same", hdr, ids, answered)
		}
		if via := linesOf(up, "Via"); strings.Join(via, ",") != "a,b" {
			t.Errorf("%q: Via lines %q, want a, b in order", hdr, via)
		}
	}
}

// Traceparent is a field the gateway sets for the upstream too
// (injectTraceparent, with Set): a client's second line went upstream
// beside the gateway's, and the gateway continued the trace of the first.
// Two lines are no parent: W3C Trace Context's test suite
// (test_traceparent_duplicated) wants the trace restarted, and no client
// line goes on.
func TestClientsSecondTraceparentDoesNotReachUpstream(t *testing.T) {
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}, Tracing: true}, up)
	const first, second = "4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"
	for _, hdr := range []string{
		"Traceparent: 00-" + first + "-00f067aa0ba902b7-01\r\nVia: a\r\nVia: b\r\ntraceparent: 00-" + second + "-b7ad6b7169203331-01\r\n",
		"Traceparent: 00-" + first + "-00f067aa0ba902b7-01\r\nVia: a\r\nVia: b\r\nTraceparent: 00-" + first + "-00f067aa0ba902b7-01\r\n",
	} {
		ctx := serve(p, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\n"+hdr+"\r\n")
		if ctx.Response.StatusCode() != 200 {
			t.Fatalf("%q: %d %s", hdr, ctx.Response.StatusCode(), ctx.Response.Body())
		}
		tps := linesOf(up, "Traceparent")
		if len(tps) != 1 || strings.Contains(tps[0], first) || strings.Contains(tps[0], second) {
			t.Errorf("%q: upstream got traceparent lines %q, want one, of a trace the gateway began", hdr, tps)
		}
		if via := linesOf(up, "Via"); strings.Join(via, ",") != "a,b" {
			t.Errorf("%q: Via lines %q, want a, b in order", hdr, via)
		}
	}
}

// Tracestate in two lines is one list, the lines comma-joined (W3C Trace
// Context, RFC 9110 §5.3): the gateway's span read the first line only, so
// it lost the other line's members (the upstream still got both lines).
// Now the span has every member, and the upstream one line with all of them.
func TestTracestateLinesAreOneList(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	up := startUpstream(t)
	p, _ := newTestProxy(t, Options{Auth: fakeAuth{}, Tracing: true}, up)
	ctx := serve(p, "GET /api/v1/orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer good\r\n"+
		"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nTracestate: a=1,b=2\r\nVia: a\r\ntracestate: c=3\r\nVia: b\r\n\r\n")
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("%d %s", ctx.Response.StatusCode(), ctx.Response.Body())
	}
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			if got := s.SpanContext().TraceState().String(); got != "a=1,b=2,c=3" {
				t.Errorf("the gateway's span has tracestate %q, want a=1,b=2,c=3", got)
			}
		}
	}
	if ts := linesOf(up, "Tracestate"); strings.Join(ts, "|") != "a=1,b=2,c=3" {
		t.Errorf("upstream got tracestate lines %q, want one: a=1,b=2,c=3", ts)
	}
	if via := linesOf(up, "Via"); strings.Join(via, ",") != "a,b" {
		t.Errorf("Via lines %q, want a, b in order", via)
	}
}
