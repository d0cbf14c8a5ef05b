package telemetry

import (
	"context"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// FuzzParseTraceparent holds ParseTraceparent, on strings and on bytes, to propagation.TraceContext:
// for any traceparent and tracestate, both find the same span context or
// both find none. The seeds (run by every go test) cover each rule.
func FuzzParseTraceparent(f *testing.F) {
	const ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tp := range []string{
		ok, "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-04",
		"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01extra", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
		"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
		"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g", "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	} {
		for _, ts := range []string{"", "vendor=x,other=y", "bad state"} {
			f.Add(tp, ts)
		}
	}
	f.Fuzz(func(t *testing.T, tp, ts string) {
		h := http.Header{}
		h.Set("traceparent", tp)
		if ts != "" {
			h.Set("tracestate", ts)
		}
		want := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), headerCarrier(h)))
		first := ""
		if v := h["Tracestate"]; len(v) > 0 {
			first = v[0]
		}
		for _, got := range []trace.SpanContext{ParseTraceparent(tp, first), ParseTraceparent([]byte(tp), []byte(first))} {
			if !got.Equal(want) || got.TraceState().String() != want.TraceState().String() {
				t.Fatalf("traceparent %q tracestate %q: parsed %+v, the propagator %+v", tp, ts, got, want)
			}
		}
	})
}

// BenchmarkParseTraceparent is the parse every request with a traceparent
// pays (the middleware's unsampled path and the gateway's).
func BenchmarkParseTraceparent(b *testing.B) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	b.ReportAllocs()
	cpu0 := processCPU()
	for b.Loop() {
		if !ParseTraceparent(tp, "").IsValid() {
			b.Fatal("invalid")
		}
	}
	b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
}
