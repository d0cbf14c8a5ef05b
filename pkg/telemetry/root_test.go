package telemetry

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// serverTracerWith is Setup with the given sampler variables and a
// ServerTracer of its (global) provider.
func serverTracerWith(t *testing.T, sampler, arg string) (*ServerTracer, func() []sdktrace.ReadOnlySpan) {
	t.Helper()
	t.Setenv(envSampler, sampler)
	t.Setenv(envSamplerArg, arg)
	_, rec, _ := setup(t)
	return NewServerTracer(otel.GetTracerProvider(), "test"), rec.Ended
}

// TestServerTracerRootRatio: at parentbased_traceidratio 0.1 the
// ServerTracer samples one root in ten, exactly the trace ids the SDK's
// ratio sampler samples, records each of them through the SDK with the id
// it drew, and gives the others valid unsampled ids without the SDK.
func TestServerTracerRootRatio(t *testing.T) {
	seedRandom(t, 42)
	st, ended := serverTracerWith(t, "parentbased_traceidratio", "0.1")
	if st.sampling == nil {
		t.Fatal("no fast path on Setup's provider")
	}
	ratio := sdktrace.TraceIDRatioBased(0.1)
	const n = 10000
	sampled := map[trace.SpanID]trace.TraceID{}
	for range n {
		ctx, span := st.Start(context.Background(), trace.SpanContext{}, "GET /x", serverSpanKind...)
		sc := span.SpanContext()
		if trace.SpanFromContext(ctx) != span {
			t.Fatal("the span is not in the returned context")
		}
		want := ratio.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: sc.TraceID()})
		if sc.IsSampled() != (want.Decision == sdktrace.RecordAndSample) || sc.IsSampled() != span.IsRecording() {
			t.Fatalf("trace %s: sampled %v recording %v, the ratio sampler says %v", sc.TraceID(), sc.IsSampled(), span.IsRecording(), want.Decision)
		}
		if !sc.IsValid() || sc.IsRemote() {
			t.Fatalf("span context %+v: want valid local ids", sc)
		}
		if _, dropped := span.(*unsampledCtx); dropped == sc.IsSampled() {
			t.Fatalf("trace %s: sampled %v but built by the SDK %v", sc.TraceID(), sc.IsSampled(), !dropped)
		}
		if sc.IsSampled() {
			sampled[sc.SpanID()] = sc.TraceID()
		}
		span.End()
	}
	// Binomial(10000, 0.1): standard deviation 30.
	if len(sampled) < 900 || len(sampled) > 1100 {
		t.Fatalf("%d of %d roots sampled, want about 1000", len(sampled), n)
	}
	spans := ended()
	if len(spans) != len(sampled) {
		t.Fatalf("%d spans recorded, %d sampled", len(spans), len(sampled))
	}
	for _, s := range spans {
		if sampled[s.SpanContext().SpanID()] != s.SpanContext().TraceID() || s.SpanKind() != trace.SpanKindServer {
			t.Fatalf("recorded span %s/%s (kind %s) is not one Start returned", s.SpanContext().TraceID(), s.SpanContext().SpanID(), s.SpanKind())
		}
	}
}

var serverSpanKind = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer)}

// TestServerTracerParents: a caller's decision is kept under parentbased_*
// (sampled: recorded as the caller's child; not sampled: never recorded,
// the caller's trace, trace state and flags without "sampled", a span id of
// its own), a remote parent is decided by its trace id under plain
// traceidratio, and a local parent in ctx goes to the SDK.
func TestServerTracerParents(t *testing.T) {
	st, ended := serverTracerWith(t, "parentbased_traceidratio", "0")
	ts, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		flags := trace.TraceFlags(0)
		if i%2 == 0 {
			flags = trace.FlagsSampled
		}
		remote := ParseTraceparent(fmt.Sprintf("00-%032x-00f067aa0ba902b7-%02x", i+1, byte(flags)), "vendor=x")
		before := len(ended())
		_, span := st.Start(context.Background(), remote, "s", serverSpanKind...)
		span.End()
		sc := span.SpanContext()
		if sc.TraceID() != remote.TraceID() || sc.SpanID() == remote.SpanID() || !sc.SpanID().IsValid() ||
			sc.IsSampled() != remote.IsSampled() || sc.IsRemote() || sc.TraceState().String() != ts.String() {
			t.Fatalf("parent %+v: server span %+v", remote, sc)
		}
		got := ended()[before:]
		switch {
		case remote.IsSampled() && (len(got) != 1 || got[0].Parent().SpanID() != remote.SpanID()):
			t.Fatalf("sampled parent %s: %d spans recorded, want one child of it", remote.TraceID(), len(got))
		case !remote.IsSampled() && len(got) != 0:
			t.Fatalf("unsampled parent %s: %d spans recorded", remote.TraceID(), len(got))
		}
	}

	// A local parent in ctx, and no remote: the SDK decides (always_off
	// would drop a root; a sampled local parent keeps its child sampled).
	st, ended = serverTracerWith(t, "parentbased_always_off", "")
	psc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	pctx := trace.ContextWithSpanContext(context.Background(), psc)
	_, span := st.Start(pctx, trace.SpanContext{}, "s", serverSpanKind...)
	span.End()
	if !span.SpanContext().IsSampled() || span.SpanContext().TraceID() != psc.TraceID() {
		t.Fatalf("child of a sampled local parent: %+v", span.SpanContext())
	}
	if _, dropped := span.(*unsampledCtx); dropped {
		t.Fatal("a local parent's child did not go through the SDK")
	}
	if n := len(ended()); n != 1 {
		t.Fatalf("%d spans recorded, want the local parent's child", n)
	}
}

// TestServerTracerMatchesSDK: for every sampler setting, the span Start
// returns is flagged exactly as the SDK's own sampler (built from the same
// variables) flags a span with that trace id under the same parent.
func TestServerTracerMatchesSDK(t *testing.T) {
	envs := []struct{ sampler, arg string }{
		{"", ""}, {"always_on", ""}, {"always_off", ""}, {"traceidratio", "0.25"}, {"traceidratio", "0"},
		{"parentbased_always_on", ""}, {"parentbased_always_off", ""}, {"parentbased_traceidratio", "0.25"},
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for _, env := range envs {
		t.Run(env.sampler+"="+env.arg, func(t *testing.T) {
			seedRandom(t, 9)
			st, _ := serverTracerWith(t, env.sampler, env.arg)
			ids := &fixedIDs{}
			sdk := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(ids)).Tracer("t") // reads the same variables
			for range 200 {
				var tid trace.TraceID
				binary.BigEndian.PutUint64(tid[:8], rng.Uint64())
				binary.BigEndian.PutUint64(tid[8:], rng.Uint64())
				for _, flags := range []trace.TraceFlags{0, trace.FlagsSampled} {
					remote := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{9}, TraceFlags: flags, Remote: true})
					_, got := st.Start(context.Background(), remote, "s")
					ids.tid = tid
					_, want := sdk.Start(trace.ContextWithRemoteSpanContext(context.Background(), remote), "s")
					if got.SpanContext().TraceFlags() != want.SpanContext().TraceFlags() {
						t.Fatalf("remote parent %s flags %s: ServerTracer gives %s, the SDK %s", tid, flags, got.SpanContext().TraceFlags(), want.SpanContext().TraceFlags())
					}
					got.End()
					want.End()
				}
				_, got := st.Start(context.Background(), trace.SpanContext{}, "s")
				ids.tid = got.SpanContext().TraceID()
				_, want := sdk.Start(context.Background(), "s")
				if got.SpanContext().TraceFlags() != want.SpanContext().TraceFlags() {
					t.Fatalf("root %s: ServerTracer gives %s, the SDK %s", ids.tid, got.SpanContext().TraceFlags(), want.SpanContext().TraceFlags())
				}
				got.End()
				want.End()
			}
		})
	}
}

// TestServerTracerOtherProvider: with a provider Setup did not build, every
// span goes through that provider, continuing the remote parent.
func TestServerTracerOtherProvider(t *testing.T) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	st := NewServerTracer(tp, "test")
	remote := ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
	_, span := st.Start(context.Background(), remote, "s")
	if _, dropped := span.(*unsampledCtx); dropped || span.SpanContext().TraceID() != remote.TraceID() || span.SpanContext().IsSampled() {
		t.Fatalf("span %T %+v: want the provider's own, unsampled, in the caller's trace", span, span.SpanContext())
	}
}

// BenchmarkServerTracer is the cost of a dropped and of a sampled root at
// the gateway's 10% ratio, against the SDK's Start of the same spans.
// BenchmarkServerTracer: a server span through ServerTracer (Start, and
// StartIn with storage for a dropped span) and through the SDK's tracer of
// the same provider, at the gateway's 10% ratio (no processor) and with
// every span sampled into a batch processor and an exporter that drops them (what a sampled gateway request pays, minus the
// network). cpu-ns/op counts every thread, the batch processor's too.
func BenchmarkServerTracer(b *testing.B) {
	for _, tc := range []struct {
		name, sampler, arg string
		procs              []sdktrace.SpanProcessor
	}{
		{"", "parentbased_traceidratio", "0.1", nil},
		{"Sampled", "always_on", "", []sdktrace.SpanProcessor{sdktrace.NewBatchSpanProcessor(nopExporter{})}},
	} {
		b.Setenv(envSampler, tc.sampler)
		b.Setenv(envSamplerArg, tc.arg)
		b.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
		p, err := Setup(context.Background(), Options{ServiceName: "bench", SpanProcessors: tc.procs})
		if err != nil {
			b.Fatal(err)
		}
		st := NewServerTracer(p.Tracer, "bench")
		sdk := p.Tracer.Tracer("bench")
		b.Run(tc.name+"ServerTracer", func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				_, span := st.Start(context.Background(), trace.SpanContext{}, "GET /x", serverSpanKind...)
				span.End()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
		b.Run(tc.name+"ServerTracerIn", func(b *testing.B) {
			var u UnsampledSpan // as the gateway keeps it in its pooled exchange
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				_, span := st.StartIn(&u, context.Background(), trace.SpanContext{}, "GET /x", serverSpanKind...)
				span.End()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
		b.Run(tc.name+"SDK", func(b *testing.B) {
			b.ReportAllocs()
			cpu0 := processCPU()
			for b.Loop() {
				_, span := sdk.Start(context.Background(), "GET /x", serverSpanKind...)
				span.End()
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
		_ = p.Shutdown(context.Background())
	}
}

// TestServerTracerStartIn: StartIn decides as Start does and, for a span it
// drops, gives the same span context Start gives (same trace id, span id
// drawn the same way, flags 00, the caller's trace state) from the caller's
// storage, with no allocation; a sampled span is Start's recording span.
func TestServerTracerStartIn(t *testing.T) {
	st, _ := serverTracerWith(t, "parentbased_traceidratio", "0.1")
	parents := map[string]trace.SpanContext{
		"root":             {},
		"unsampled parent": ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", "vendor=x,other=y"),
		"sampled parent":   ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=x"),
	}
	var u UnsampledSpan
	for name, remote := range parents {
		for seed := range uint64(50) {
			seedRandom(t, seed)
			_, want := st.Start(context.Background(), remote, "s", serverSpanKind...)
			want.End()
			seedRandom(t, seed)
			ctx, got := st.StartIn(&u, context.Background(), remote, "s", serverSpanKind...)
			got.End()
			if !got.SpanContext().Equal(want.SpanContext()) || got.IsRecording() != want.IsRecording() {
				t.Fatalf("%s, seed %d: StartIn gave %+v (recording %v), Start %+v (recording %v)", name, seed,
					got.SpanContext(), got.IsRecording(), want.SpanContext(), want.IsRecording())
			}
			if trace.SpanFromContext(ctx) != got {
				t.Fatalf("%s: the span is not in the returned context", name)
			}
			if dropped := got == trace.Span(&u.span); dropped == got.SpanContext().IsSampled() {
				t.Fatalf("%s: sampled %v, in the caller's storage %v", name, got.SpanContext().IsSampled(), dropped)
			}
		}
	}
	if raceEnabled {
		return
	}
	// At ratio 0 every root is dropped too.
	st, _ = serverTracerWith(t, "parentbased_traceidratio", "0")
	for _, name := range []string{"root", "unsampled parent"} {
		remote := parents[name]
		n := testing.AllocsPerRun(200, func() {
			ctx, span := st.StartIn(&u, context.Background(), remote, "s", serverSpanKind...)
			if !trace.SpanContextFromContext(ctx).IsValid() || span.IsRecording() {
				t.Fatalf("%s: not a dropped span with ids", name)
			}
			span.End()
		})
		if n != 0 {
			t.Fatalf("%s: %.2f allocations per dropped span, want 0", name, n)
		}
	}
}
