package telemetry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// seedRandom makes the middleware's ids (and so its root decisions)
// reproducible for the rest of the test.
func seedRandom(t *testing.T, seed uint64) {
	t.Helper()
	prev := random
	random = rand.New(rand.NewPCG(seed, seed)).Uint64
	t.Cleanup(func() { random = prev })
}

// fixedIDs gives every root the trace id set last, so two providers can be
// asked about the same trace id.
type fixedIDs struct{ tid trace.TraceID }

func (f *fixedIDs) NewIDs(context.Context) (trace.TraceID, trace.SpanID) {
	return f.tid, trace.SpanID{1}
}
func (f *fixedIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return trace.SpanID{1} }

// TestSamplerMatchesSDK: for every value of OTEL_TRACES_SAMPLER(_ARG), the
// sampler Setup builds and the middleware's own decision agree with the
// sampler the SDK builds from the same variables, for roots and for remote
// and local parents, sampled or not, over trace ids on both sides of the
// ratio's bound.
func TestSamplerMatchesSDK(t *testing.T) {
	envs := []struct{ sampler, arg string }{
		{"", ""}, {"always_on", ""}, {"always_off", ""}, {"traceidratio", "0.25"}, {"traceidratio", ""},
		{"traceidratio", "0"}, {"traceidratio", "1"}, {"traceidratio", "1.5"}, {"traceidratio", "-1"},
		{"traceidratio", "abc"}, {"TraceIDRatio", " 0.5 "}, {"parentbased_always_on", ""},
		{"parentbased_always_off", ""}, {"parentbased_traceidratio", "0.25"}, {"parentbased_traceidratio", "x"},
		{"jaeger_remote", ""},
	}
	// Trace ids whose deciding half is just below and just above the bound
	// of ratio 0.25 and 0.5, and spread over the whole range.
	var lows []uint64
	for _, r := range []float64{0.25, 0.5} {
		b := uint64(r*(1<<63)) << 1
		lows = append(lows, b-2, b-1, b, b+1, b+2)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for range 40 {
		lows = append(lows, rng.Uint64())
	}
	for _, env := range envs {
		t.Run(env.sampler+"="+env.arg, func(t *testing.T) {
			t.Setenv(envSampler, env.sampler)
			t.Setenv(envSamplerArg, env.arg)
			ours, samp, _ := samplerFromEnv()
			ids := &fixedIDs{}
			sdk := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(ids)).Tracer("t")
			mine := sdktrace.NewTracerProvider(sdktrace.WithIDGenerator(ids), sdktrace.WithSampler(ours)).Tracer("t")
			for _, low := range lows {
				var tid trace.TraceID
				binary.BigEndian.PutUint64(tid[:8], 0x0123456789abcdef)
				binary.BigEndian.PutUint64(tid[8:], low)
				ids.tid = tid
				for _, p := range parents(tid) {
					_, want := sdk.Start(p.ctx, "s")
					_, got := mine.Start(p.ctx, "s")
					if got.SpanContext().TraceFlags() != want.SpanContext().TraceFlags() {
						t.Fatalf("%s, trace %s: Setup's sampler gives flags %s, the SDK's %s",
							p.name, tid, got.SpanContext().TraceFlags(), want.SpanContext().TraceFlags())
					}
					checkDecision(t, &samp, p.name, p.ctx, tid, want.SpanContext())
				}
			}
		})
	}
}

// A ratio that is not a number is reported and replaced by 1, as one
// outside [0, 1] is. Taken as it was, the middleware's fast path sampled no
// root (its bound came out 0) while the sampler it installed in the SDK,
// TraceIDRatioBased(NaN), compared trace ids against uint64(NaN·2⁶³), which
// is every one on amd64. (NaN stays out of TestSamplerMatchesSDK for that
// reason: the SDK's own reading of it depends on the platform.)
func TestSamplerRatioNaNIsInvalid(t *testing.T) {
	for _, name := range []string{"traceidratio", "parentbased_traceidratio"} {
		t.Setenv(envSampler, name)
		t.Setenv(envSamplerArg, "NaN")
		ours, samp, err := samplerFromEnv()
		if err == nil || !strings.Contains(err.Error(), "outside [0, 1]") {
			t.Errorf("%s=NaN: warning %v, want one that the ratio is outside [0, 1]", name, err)
		}
		if !samp.all || !strings.Contains(ours.Description(), "TraceIDRatioBased{1}") {
			t.Errorf("%s=NaN: sampler %s, fast path %+v; want ratio 1 in both", name, ours.Description(), samp)
		}
	}
}

type parent struct {
	name string
	ctx  context.Context
}

// parents are the contexts a server span may start under, for trace id tid.
func parents(tid trace.TraceID) []parent {
	sc := func(flags trace.TraceFlags, remote bool) trace.SpanContext {
		return trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: trace.SpanID{9}, TraceFlags: flags, Remote: remote,
		})
	}
	bg := context.Background()
	return []parent{
		{"root", bg},
		{"remote sampled", trace.ContextWithSpanContext(bg, sc(trace.FlagsSampled, true))},
		{"remote unsampled", trace.ContextWithSpanContext(bg, sc(0, true))},
		{"local sampled", trace.ContextWithSpanContext(bg, sc(trace.FlagsSampled, false))},
		{"local unsampled", trace.ContextWithSpanContext(bg, sc(0, false))},
	}
}

// checkDecision compares the middleware's decision under ctx (a root drawn
// with trace id tid) with the span the SDK started there.
func checkDecision(t *testing.T, s *sampling, name string, ctx context.Context, tid trace.TraceID, sdk trace.SpanContext) {
	t.Helper()
	draws := []uint64{binary.BigEndian.Uint64(tid[:8]), binary.BigEndian.Uint64(tid[8:])}
	prev := random
	random = func() uint64 {
		if len(draws) == 0 {
			return 0x5eed
		}
		v := draws[0]
		draws = draws[1:]
		return v
	}
	defer func() { random = prev }()
	d, psc, root := s.decide(trace.SpanContextFromContext(ctx))
	local := trace.SpanContextFromContext(ctx).IsValid() && !trace.SpanContextFromContext(ctx).IsRemote()
	dropped := d == drop || d == dropRoot
	switch {
	case local && d != useSDK:
		t.Fatalf("%s: decision %d, want the SDK for a local parent", name, d)
	case dropped && sdk.IsSampled():
		t.Fatalf("%s, trace %s: the middleware drops what the SDK samples", name, tid)
	case !dropped && !sdk.IsSampled() && !local:
		t.Fatalf("%s, trace %s: the middleware samples (%d) what the SDK drops", name, tid, d)
	case dropped:
		var span trace.Span
		if d == dropRoot {
			c := new(unsampledCtx)
			c.initRoot(context.Background(), root, &unsampledExts{})
			span = c
		} else {
			_, span = withUnsampled(context.Background(), psc, &unsampledExts{})
		}
		got := span.SpanContext()
		if got.TraceID() != sdk.TraceID() || got.TraceFlags() != sdk.TraceFlags() ||
			got.TraceState().String() != sdk.TraceState().String() || got.IsRemote() || !got.IsValid() {
			t.Fatalf("%s: dropped span context %+v, the SDK's %+v", name, got, sdk)
		}
	case d == sampleRoot && !s.all && psc.TraceID() != tid:
		t.Fatalf("%s: sampled root with trace id %s, drawn %s", name, psc.TraceID(), tid)
	}
}

// setupWith is setup with the given sampler variables.
func setupWith(t *testing.T, sampler, arg string) (*tracetest.SpanRecorder, *gin.Engine, *[]trace.SpanContext) {
	t.Helper()
	t.Setenv(envSampler, sampler)
	t.Setenv(envSamplerArg, arg)
	_, rec, _ := setup(t)
	e := gin.New()
	e.Use(Middleware())
	var seen []trace.SpanContext
	e.GET("/s", func(c *gin.Context) {
		seen = append(seen, trace.SpanContextFromContext(c.Request.Context()))
		c.Status(http.StatusOK)
	})
	return rec, e, &seen
}

func get(e *gin.Engine, traceparent string) {
	req := httptest.NewRequest(http.MethodGet, "/s", nil)
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	e.ServeHTTP(httptest.NewRecorder(), req)
}

// TestRootRatio: with parentbased_traceidratio 0.1 the middleware decides
// roots itself, and one in ten is sampled; every sampled trace id is one the
// SDK's ratio sampler (here or in the next service) samples too, and every
// unsampled request still has valid ids with flags 00.
func TestRootRatio(t *testing.T) {
	seedRandom(t, 42)
	rec, e, seen := setupWith(t, "parentbased_traceidratio", "0.1")
	const n = 10000
	for range n {
		get(e, "")
	}
	spans := rec.Ended()
	// Binomial(10000, 0.1): standard deviation 30; the seed makes the count
	// fixed, the bound says what any seed should give.
	if len(spans) < 900 || len(spans) > 1100 {
		t.Fatalf("%d of %d roots sampled, want about 1000", len(spans), n)
	}
	ratio := sdktrace.TraceIDRatioBased(0.1)
	recorded := map[trace.SpanID]bool{}
	for _, s := range spans {
		if _, ours := s.(*serverSpan); !ours {
			t.Fatalf("sampled root recorded by a %T, want the middleware's own span (serverspan.go)", s)
		}
		recorded[s.SpanContext().SpanID()] = true
		r := ratio.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: s.SpanContext().TraceID()})
		if r.Decision != sdktrace.RecordAndSample {
			t.Fatalf("sampled trace %s is one TraceIDRatioBased(0.1) drops", s.SpanContext().TraceID())
		}
	}
	if len(*seen) != n {
		t.Fatalf("handler ran %d times", len(*seen))
	}
	unsampled := 0
	for _, sc := range *seen {
		if recorded[sc.SpanID()] {
			if !sc.IsSampled() {
				t.Fatal("a recorded span is not flagged sampled")
			}
			continue
		}
		unsampled++
		if !sc.IsValid() || sc.IsSampled() || sc.IsRemote() {
			t.Fatalf("unsampled request's span context %+v: want valid ids, flags 00, local", sc)
		}
		r := ratio.ShouldSample(sdktrace.SamplingParameters{ParentContext: context.Background(), TraceID: sc.TraceID()})
		if r.Decision != sdktrace.Drop {
			t.Fatalf("unsampled trace %s is one TraceIDRatioBased(0.1) samples", sc.TraceID())
		}
	}
	if unsampled+len(spans) != n {
		t.Fatalf("%d unsampled + %d sampled != %d requests", unsampled, len(spans), n)
	}
}

// TestUnsampledParentNeverRecords: under the default parentbased_always_on, a
// caller's "not sampled" is kept: nothing is recorded, and the handler's
// context carries the caller's trace with a span id of its own, which logs
// show and outgoing calls pass on with flags 00 and the caller's tracestate.
func TestUnsampledParentNeverRecords(t *testing.T) {
	t.Setenv(envSampler, "")
	_, rec, _ := setup(t)
	var logs bytes.Buffer
	log := NewLogger(&logs, slog.LevelInfo)
	e := gin.New()
	e.Use(Middleware())
	var sc trace.SpanContext
	out := http.Header{}
	e.GET("/s", func(c *gin.Context) {
		ctx := c.Request.Context()
		sc = trace.SpanContextFromContext(ctx)
		log.InfoContext(ctx, "handled")
		otel.GetTextMapPropagator().Inject(ctx, headerCarrier(out))
	})
	for i := range 200 {
		tid := fmt.Sprintf("%032x", i+1)
		req := httptest.NewRequest(http.MethodGet, "/s", nil)
		req.Header.Set("traceparent", "00-"+tid+"-00f067aa0ba902b7-00")
		req.Header.Set("tracestate", "vendor=x")
		e.ServeHTTP(httptest.NewRecorder(), req)

		if sc.TraceID().String() != tid || sc.SpanID().String() == "00f067aa0ba902b7" || !sc.SpanID().IsValid() ||
			sc.IsSampled() || sc.IsRemote() {
			t.Fatalf("handler's span context %+v: want trace %s, a new span id, flags 00", sc, tid)
		}
		if want := "00-" + tid + "-" + sc.SpanID().String() + "-00"; out.Get("traceparent") != want {
			t.Fatalf("outgoing traceparent %q, want %q", out.Get("traceparent"), want)
		}
		if out.Get("tracestate") != "vendor=x" {
			t.Fatalf("outgoing tracestate %q, want the caller's", out.Get("tracestate"))
		}
		var line map[string]any
		if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
			t.Fatalf("log line %q: %v", logs.String(), err)
		}
		logs.Reset()
		if line["trace_id"] != tid || line["span_id"] != sc.SpanID().String() {
			t.Fatalf("log line %v does not carry trace %s span %s", line, tid, sc.SpanID())
		}
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans recorded under unsampled parents", n)
	}
}

// TestSampledParentAlwaysRecords: with roots never sampled, a caller's
// "sampled" still is, every time, continuing the caller's trace.
func TestSampledParentAlwaysRecords(t *testing.T) {
	rec, e, _ := setupWith(t, "parentbased_traceidratio", "0")
	for range 100 {
		get(e, "")
	}
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d roots sampled at ratio 0", n)
	}
	for i := range 200 {
		get(e, fmt.Sprintf("00-%032x-00f067aa0ba902b7-01", i+1))
	}
	spans := rec.Ended()
	if len(spans) != 200 {
		t.Fatalf("%d of 200 requests with a sampled parent recorded", len(spans))
	}
	for i, s := range spans {
		if s.SpanContext().TraceID().String() != fmt.Sprintf("%032x", i+1) || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
			t.Fatalf("span %d: trace %s parent %s, want the caller's", i, s.SpanContext().TraceID(), s.Parent().SpanID())
		}
	}
}

// TestNewRootInHandler: the trace id a sampled root was started with is
// handed to the SDK once; a span the handler starts as a new root from the
// request context gets a trace of its own.
func TestNewRootInHandler(t *testing.T) {
	seedRandom(t, 1)
	t.Setenv(envSampler, "traceidratio")
	t.Setenv(envSamplerArg, "0.9999")
	_, rec, _ := setup(t)
	e := gin.New()
	e.Use(Middleware())
	var server, root trace.SpanContext
	e.GET("/s", func(c *gin.Context) {
		server = trace.SpanContextFromContext(c.Request.Context())
		_, s := otel.Tracer("t").Start(c.Request.Context(), "job", trace.WithNewRoot())
		root = s.SpanContext()
		s.End()
	})
	get(e, "")
	if !server.IsSampled() || !server.IsValid() {
		t.Fatalf("server span %+v not sampled at ratio 0.9999 (seeded)", server)
	}
	if root.TraceID() == server.TraceID() {
		t.Fatalf("new root reused the request's trace id %s", root.TraceID())
	}
	if n := len(rec.Ended()); n != 2 {
		t.Fatalf("%d spans, want the server span and the new root", n)
	}
}

// TestFastPathOnlyForSetupProviders: the middleware decides without the SDK
// only for a provider Setup built and has not shut down, and not when the
// SDK's self-observability (which counts every span it starts) is on.
func TestFastPathOnlyForSetupProviders(t *testing.T) {
	p, _, _ := setup(t)
	if s, _ := samplingOf(p.Tracer); s == nil {
		t.Fatal("Setup's provider has no sampling")
	}
	if s, _ := samplingOf(sdktrace.NewTracerProvider()); s != nil {
		t.Fatal("a provider Setup did not build has a sampling")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s, _ := samplingOf(p.Tracer); s != nil {
		t.Fatal("a shut down provider still has a sampling")
	}
	t.Setenv(envObservability, "true")
	p, _, _ = setup(t)
	if s, _ := samplingOf(p.Tracer); s != nil {
		t.Fatal("fast path on with OTEL_GO_X_OBSERVABILITY=true")
	}
}

// TestSpanKey: the unsampled request context answers trace.SpanFromContext
// itself (one allocation instead of two); if an otel version stores spans
// differently, spanKey is nil and this fails instead of the middleware
// silently allocating more.
func TestSpanKey(t *testing.T) {
	if spanKey == nil {
		t.Fatal("spanKey not found: trace.SpanFromContext no longer asks the context for one key")
	}
	type k struct{}
	parent := context.WithValue(context.Background(), k{}, "v")
	ts, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	var ctx context.Context
	var span trace.Span
	for _, state := range []trace.TraceState{{}, ts} {
		psc := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsRandom | trace.FlagsSampled,
			TraceState: state, Remote: true,
		})
		exts := newUnsampledExts(tp)
		ctx, span = withUnsampled(parent, psc, &exts)
		got := trace.SpanFromContext(ctx)
		if got != span || got.IsRecording() {
			t.Fatalf("SpanFromContext = %v, want the unsampled span", got)
		}
		sc := got.SpanContext()
		if sc.TraceID() != psc.TraceID() || !sc.SpanID().IsValid() || sc.SpanID() == psc.SpanID() ||
			sc.TraceFlags() != trace.FlagsRandom || sc.IsRemote() || sc.TraceState().String() != state.String() {
			t.Fatalf("unsampled child %+v of %+v: want the trace, state and flags without sampled, a new span id", sc, psc)
		}
	}
	if got := span.TracerProvider(); got != trace.TracerProvider(tp) {
		t.Fatalf("span's tracer provider %v, want the SDK's", got)
	}
	if ctx.Value(k{}) != "v" {
		t.Fatal("the parent's values are lost")
	}
	if got := fmt.Sprint(ctx); !strings.HasPrefix(got, "context.Background.WithValue(") || !strings.HasSuffix(got, ".WithUnsampledSpan") {
		t.Fatalf("context prints as %q", got)
	}
	// A child context still finds the span, and cancellation still works
	// through the custom context.
	child, cancel := context.WithCancel(ctx)
	cancel()
	if trace.SpanFromContext(child) != span || child.Err() == nil {
		t.Fatal("a child of the unsampled context lost the span or its cancellation")
	}
}

// TestRoutesConcurrently: requests to new routes and methods arriving at
// once all find their own route info (the per-method maps are copied on
// write; go test -race checks the copying).
func TestRoutesConcurrently(t *testing.T) {
	mw := &middleware{noSpan: map[string]bool{"/r3": true}}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			<-start
			for i := range 600 {
				route := fmt.Sprintf("/r%d", (g*37+i)%200)
				method := methodIndex([]string{"GET", "POST", "BREW"}[i%3])
				ri := mw.route(method, route)
				if want := methods[method] + " " + route; ri.name != want || ri.noSpan != (route == "/r3") {
					t.Errorf("route info %q noSpan=%v, want %q", ri.name, ri.noSpan, want)
					return
				}
				if mw.route(method, route) != ri {
					t.Errorf("%s %s: a second lookup gave another route info", methods[method], route)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
}

// TestUnsampledSpanSharesItsTracersEnd: unsampled spans under parents with
// an empty trace state and flags the parsers let through share their
// tracer's unsampledExt, and any other span has its own with the parent's
// state and flags, without touching the shared ones the next span gets.
func TestUnsampledSpanSharesItsTracersEnd(t *testing.T) {
	st, _ := serverTracerWith(t, "always_off", "")
	ts, err := trace.ParseTraceState("vendor=x")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flags  trace.TraceFlags
		state  trace.TraceState
		shared bool
	}{
		{0, trace.TraceState{}, true},
		{trace.FlagsRandom, trace.TraceState{}, true},
		{trace.FlagsSampled | trace.FlagsRandom, ts, false},
		{0, ts, false},
		{0x80 | trace.FlagsRandom, trace.TraceState{}, false}, // a flag a later version may define
		{0, trace.TraceState{}, true},                         // after the others: the shared end is unchanged
	} {
		remote := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: tc.flags, TraceState: tc.state, Remote: true,
		})
		var u UnsampledSpan
		for _, in := range []*UnsampledSpan{nil, &u} {
			ctx, span := st.StartIn(in, context.Background(), remote, "s")
			c, ok := span.(*unsampledCtx)
			if !ok || trace.SpanFromContext(ctx) != span {
				t.Fatalf("flags %v, state %q: span %T, want the unsampled span in the context", tc.flags, tc.state, span)
			}
			sc := span.SpanContext()
			if want := tc.flags &^ trace.FlagsSampled; sc.TraceFlags() != want || sc.TraceState().String() != tc.state.String() ||
				sc.TraceID() != remote.TraceID() || span.TracerProvider() != trace.TracerProvider(st.sdk) {
				t.Fatalf("flags %v, state %q: span context %+v, want flags %v and the parent's trace and state",
					tc.flags, tc.state, sc, want)
			}
			isShared := c.unsampledExt == &st.unsampled[0] || c.unsampledExt == &st.unsampled[1]
			if isShared != tc.shared || in != nil && !tc.shared && c.unsampledExt != &u.ext {
				t.Fatalf("flags %v, state %q, storage %v: shared end %v, want %v", tc.flags, tc.state, in != nil, isShared, tc.shared)
			}
		}
	}
}

// TestDroppedRootIDsAreTheDraws: a root the sampler drops gets the ids the
// SDK's generator would give it from the same draws: the trace id is the
// first two, big-endian, high half first (a draw of all zeros drawn again),
// and the span id is the next one; flags 00, not remote. Through the
// middleware and through ServerTracer's Start and StartIn, under a sampler
// that drops every root and under a ratio that drops this one.
func TestDroppedRootIDsAreTheDraws(t *testing.T) {
	const hi, lo, sid = 0x0af7651916cd43dd, 0x8448eb211c80319c, 0xb7ad6b7169203331 // lo>>1 is above 0.1·2⁶³
	script := func(t *testing.T) {
		draws := []uint64{0, 0, hi, lo, sid}
		prev := random
		random = func() uint64 {
			if len(draws) == 0 {
				t.Fatal("more than five draws")
			}
			v := draws[0]
			draws = draws[1:]
			return v
		}
		t.Cleanup(func() { random = prev })
	}
	want := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:  trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
	})
	check := func(t *testing.T, how string, got trace.SpanContext) {
		t.Helper()
		if !got.Equal(want) {
			t.Errorf("%s: dropped root %v/%v flags %v remote %v, want %v/%v flags 00, local",
				how, got.TraceID(), got.SpanID(), got.TraceFlags(), got.IsRemote(), want.TraceID(), want.SpanID())
		}
	}
	for _, tc := range []struct{ sampler, arg string }{{"always_off", ""}, {"parentbased_traceidratio", "0.1"}, {"traceidratio", "0.1"}} {
		t.Run(tc.sampler, func(t *testing.T) {
			rec, e, seen := setupWith(t, tc.sampler, tc.arg)
			script(t)
			get(e, "")
			if len(rec.Ended()) != 0 || len(*seen) != 1 {
				t.Fatalf("%d spans recorded, handler ran %d times", len(rec.Ended()), len(*seen))
			}
			check(t, "Middleware", (*seen)[0])

			st := NewServerTracer(otel.GetTracerProvider(), "test")
			script(t)
			_, span := st.Start(context.Background(), trace.SpanContext{}, "GET /s")
			check(t, "Start", span.SpanContext())
			var u UnsampledSpan
			script(t)
			ctx, span := st.StartIn(&u, context.Background(), trace.SpanContext{}, "GET /s")
			check(t, "StartIn", span.SpanContext())
			check(t, "StartIn's context", trace.SpanContextFromContext(ctx))
		})
	}
}

// TestRootFastPathNeedsNoSpanInContext: only a request with neither a valid
// traceparent nor a span in its context is decided as a root without span
// contexts (ServerTracer.isRoot). Under parentbased_always_off, which drops
// every root: a sampled local span already in the request context (an
// outer handler's) still gets a sampled child in its trace, through Middleware
// and through ServerTracer.Start; a span context that is not valid in the
// context leaves the request a root, dropped with a trace of its own; and a
// request with nothing gets a dropped root, as before.
func TestRootFastPathNeedsNoSpanInContext(t *testing.T) {
	rec, e, seen := setupWith(t, "parentbased_always_off", "")
	local := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9}, SpanID: trace.SpanID{0x00, 0xf0}, TraceFlags: trace.FlagsSampled,
	})
	serve := func(ctx context.Context) trace.SpanContext {
		t.Helper()
		before := len(*seen)
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/s", nil).WithContext(ctx))
		if len(*seen) != before+1 {
			t.Fatal("the handler did not run")
		}
		return (*seen)[before]
	}

	got := serve(trace.ContextWithSpanContext(context.Background(), local))
	if !got.IsSampled() || got.TraceID() != local.TraceID() || got.SpanID() == local.SpanID() {
		t.Fatalf("under a sampled local span the handler got %v/%v sampled %v, want a sampled child in trace %v",
			got.TraceID(), got.SpanID(), got.IsSampled(), local.TraceID())
	}
	if n := len(rec.Ended()); n != 1 || rec.Ended()[0].Parent().SpanID() != local.SpanID() {
		t.Fatalf("%d spans recorded, want the local span's child", n)
	}

	for name, ctx := range map[string]context.Context{
		"no span":            context.Background(),
		"invalid span in it": trace.ContextWithSpanContext(context.Background(), trace.SpanContext{}),
	} {
		got := serve(ctx)
		if !got.IsValid() || got.IsSampled() || got.TraceID() == local.TraceID() {
			t.Fatalf("%s: the handler got %v/%v sampled %v, want a dropped root", name, got.TraceID(), got.SpanID(), got.IsSampled())
		}
	}
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("%d spans recorded after the dropped roots, want 1", n)
	}

	st := NewServerTracer(otel.GetTracerProvider(), "test")
	_, span := st.Start(trace.ContextWithSpanContext(context.Background(), local), trace.SpanContext{}, "GET /s")
	span.End()
	if sc := span.SpanContext(); !sc.IsSampled() || sc.TraceID() != local.TraceID() {
		t.Fatalf("ServerTracer.Start under a sampled local span: %v sampled %v", sc.TraceID(), sc.IsSampled())
	}
}

// TestRouteSameTemplate: route finds a route's info by the address of its
// template first (middleware.recent), so it must still tell apart the
// methods gin hands one template string, and a template from its own
// prefix (the same address, a shorter length); give the same info for a
// copy of the template; and keep every route right when more routes than
// slots compete for them.
func TestRouteSameTemplate(t *testing.T) {
	mw := &middleware{}
	tmpl := "/orders/:id/items"
	get := mw.route(methodIndex("GET"), tmpl)
	if get.name != "GET /orders/:id/items" {
		t.Fatalf("route info %q", get.name)
	}
	if mw.route(methodIndex("GET"), strings.Clone(tmpl)) != get || mw.route(methodIndex("GET"), tmpl) != get {
		t.Fatal("a second lookup, or one with a copy of the template, gave another route info")
	}
	if prefix := mw.route(methodIndex("GET"), tmpl[:len("/orders/:id")]); prefix.name != "GET /orders/:id" {
		t.Fatalf("the template's prefix, at the same address, gave %q", prefix.name)
	}
	// Every template under every method: with ten methods per address,
	// some share a slot.
	routes := make([]string, 4*routeSlots)
	for i := range routes {
		routes[i] = fmt.Sprintf("/r%d/:id", i)
	}
	infos := map[string]*routeInfo{}
	for round := range 3 {
		for _, r := range routes {
			for method := range methods {
				ri := mw.route(method, r)
				if want := methods[method] + " " + r; ri.name != want || ri.route != r || ri.methodIndex != method {
					t.Fatalf("round %d: route info %q (route %q, method %d), want %q", round, ri.name, ri.route, ri.methodIndex, want)
				}
				if k := methods[method] + r; round == 0 {
					infos[k] = ri
				} else if infos[k] != ri {
					t.Fatalf("round %d: %s %s got another route info", round, methods[method], r)
				}
			}
		}
	}
	if empty := mw.route(methodIndex("GET"), ""); empty.name != "GET" || mw.route(methodIndex("GET"), "") != empty {
		t.Fatalf("the unmatched route's info is %q or not kept", empty.name)
	}
}

// TestRemoteParentMatchesSDKPath: a caller's traceparent and tracestate,
// read by the middleware itself on Setup's provider (the decision made on
// the header's fields, a dropped span written from them), give the
// handler the span context the SDK path gives for the same headers and
// sampler: the caller's trace id, trace state and flags, sampled or not as
// the SDK decides, and a span id of its own; headers the propagator
// rejects leave the request a root on both paths.
func TestRemoteParentMatchesSDKPath(t *testing.T) {
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	var headers [][2]string
	for _, flags := range []string{"00", "01", "02", "03"} {
		for _, low := range []string{"0000000000000001", "7fffffffffffffff", "c000000000000000"} {
			for _, state := range []string{"", "vendor=x,other=y", "bad state"} {
				headers = append(headers, [2]string{"00-" + tid[:16] + low + "-00f067aa0ba902b7-" + flags, state})
			}
		}
	}
	for _, bad := range []string{
		"00-" + tid + "-00f067aa0ba902b7-04", "00-00000000000000000000000000000000-00f067aa0ba902b7-00",
		"00-" + tid + "-0000000000000000-00", "ff-" + tid + "-00f067aa0ba902b7-00", "00-" + tid + "-00F067AA0BA902B7-00",
		"00-" + tid + "-00f067aa0ba902b7-00-", "01-" + tid + "-00f067aa0ba902b7-00-later", "00-" + tid + "-00f067aa0ba902b7",
	} {
		headers = append(headers, [2]string{bad, "vendor=x"})
	}
	serve := func(e *gin.Engine, tp, ts string) trace.SpanContext {
		var got trace.SpanContext
		e.GET("/p", func(c *gin.Context) { got = trace.SpanContextFromContext(c.Request.Context()) })
		req := httptest.NewRequest(http.MethodGet, "/p", nil)
		req.Header.Set("traceparent", tp)
		if ts != "" {
			req.Header.Set("tracestate", ts)
		}
		e.ServeHTTP(httptest.NewRecorder(), req)
		return got
	}
	for _, env := range []struct{ sampler, arg string }{
		{"parentbased_always_on", ""}, {"parentbased_always_off", ""}, {"parentbased_traceidratio", "0.5"},
		{"traceidratio", "0.5"}, {"always_off", ""}, {"always_on", ""},
	} {
		t.Run(env.sampler+"="+env.arg, func(t *testing.T) {
			t.Setenv(envSampler, env.sampler)
			t.Setenv(envSamplerArg, env.arg)
			_, _, _ = setup(t)
			sampler, _, _ := samplerFromEnv()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sampler))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			for _, h := range headers {
				fast, sdk := gin.New(), gin.New()
				fast.Use(Middleware())
				if NewServerTracer(otel.GetTracerProvider(), "t").sampling == nil {
					t.Fatal("no fast path on Setup's provider")
				}
				sdk.Use(Middleware(WithTracerProvider(tp), WithPropagator(Propagator())))
				got, want := serve(fast, h[0], h[1]), serve(sdk, h[0], h[1])
				parent := ParseTraceparent(h[0], h[1])
				switch {
				case !got.IsValid() || got.IsRemote() || got.SpanID() == parent.SpanID():
					t.Fatalf("%q %q: the handler's span context %+v is not a new local span", h[0], h[1], got)
				case !parent.IsValid():
					if got.TraceID().String() == tid {
						t.Fatalf("%q: a rejected traceparent was continued", h[0])
					}
				case got.TraceID() != want.TraceID() || got.TraceFlags() != want.TraceFlags() ||
					got.TraceState().String() != want.TraceState().String():
					t.Fatalf("%q %q: fast path trace %s flags %s state %q, the SDK's %s %s %q", h[0], h[1],
						got.TraceID(), got.TraceFlags(), got.TraceState(), want.TraceID(), want.TraceFlags(), want.TraceState())
				}
			}
		})
	}
}
