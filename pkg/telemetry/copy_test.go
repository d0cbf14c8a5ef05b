package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

type ctxKey struct{}

// TestUnsampledRequestCopy: the request a handler gets when the request is
// not sampled (its copy shares an allocation with the span) is the
// incoming request with a context that adds only the span: same fields,
// the parent's values, the parent's cancellation; and a handler that keeps
// the request after returning (as gin's c.Copy does) keeps its own span,
// whatever later requests get.
func TestUnsampledRequestCopy(t *testing.T) {
	_, e, _ := setupWith(t, "always_off", "")
	var kept []*http.Request
	e.GET("/keep/:id", func(c *gin.Context) {
		kept = append(kept, c.Copy().Request)
		c.Status(http.StatusOK)
	})
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	in := httptest.NewRequest(http.MethodGet, "/keep/7?q=1", strings.NewReader("body"))
	in.Header.Set("X-Test", "yes")
	in = in.WithContext(parent)
	e.ServeHTTP(httptest.NewRecorder(), in)
	if len(kept) != 1 {
		t.Fatalf("handler ran %d times", len(kept))
	}
	got := kept[0]
	if got == in {
		t.Fatal("the handler got the incoming request itself, which net/http forbids changing")
	}
	if got.Method != in.Method || got.URL != in.URL || got.Host != in.Host || got.RemoteAddr != in.RemoteAddr ||
		got.Header.Get("X-Test") != "yes" || got.Body != in.Body {
		t.Fatalf("copy differs from the incoming request: %+v", got)
	}
	ctx := got.Context()
	if ctx.Value(ctxKey{}) != "v" {
		t.Fatal("the parent context's values are lost")
	}
	first := trace.SpanContextFromContext(ctx)
	if !first.IsValid() || first.IsSampled() {
		t.Fatalf("span context %+v: want valid, not sampled", first)
	}
	for range 50 {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/keep/8", nil))
	}
	if sc := trace.SpanContextFromContext(ctx); !sc.Equal(first) {
		t.Fatalf("a kept request's span changed from %v to %v after later requests", first, sc)
	}
	for _, r := range kept[1:] {
		if trace.SpanContextFromContext(r.Context()).Equal(first) {
			t.Fatal("two requests share a span")
		}
	}
	select {
	case <-ctx.Done():
		t.Fatal("done before the parent was cancelled")
	default:
	}
	cancel()
	<-ctx.Done()
	if ctx.Err() != context.Canceled {
		t.Fatalf("Err() = %v after the parent was cancelled", ctx.Err())
	}
}

// TestUnsampledRequestAllocatesOnce: an unsampled request costs the
// middleware one allocation, the request copy that carries the span.
func TestUnsampledRequestAllocatesOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	t.Setenv(envSampler, "always_off")
	p, _, _ := setup(t)
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(Middleware(WithTracerProvider(p.Tracer), WithRegisterer(prometheus.NewRegistry()), WithPropagator(Propagator())))
	e.GET("/orders/:id", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	w := &discardWriter{h: http.Header{}}
	e.ServeHTTP(w, req) // the route's first request builds its series
	if n := testing.AllocsPerRun(100, func() { e.ServeHTTP(w, req) }); n != 1 {
		t.Fatalf("%v allocations per unsampled request, want 1", n)
	}
}

// TestContextAttrInTheCopy: WithContextAttr's attribute reaches the
// handlers' context beside the span, after any attributes the incoming
// context had and below WithContextFunc's additions, for unsampled,
// sampled and span-less routes; an unsampled request still allocates once.
func TestContextAttrInTheCopy(t *testing.T) {
	type key struct{}
	for _, sampler := range []string{"always_off", "always_on"} {
		t.Run(sampler, func(t *testing.T) {
			t.Setenv(envSampler, sampler)
			p, _, _ := setup(t)
			e := gin.New()
			n := 0
			e.Use(Middleware(WithTracerProvider(p.Tracer), WithRegisterer(prometheus.NewRegistry()), WithoutSpans("/quiet"),
				WithContextAttr(func(c *gin.Context) slog.Attr { n++; return slog.Int("request_no", n) }),
				WithContextFunc(func(_ *gin.Context, ctx context.Context) context.Context {
					if len(Attrs(ctx)) != 2 {
						t.Errorf("WithContextFunc saw attributes %v, want the attribute added first", Attrs(ctx))
					}
					return context.WithValue(ctx, key{}, true)
				})))
			var got []string
			h := func(c *gin.Context) {
				ctx := c.Request.Context()
				got = append(got, fmt.Sprint(Attrs(ctx), trace.SpanFromContext(ctx).SpanContext().IsValid(), ctx.Value(key{})))
			}
			e.GET("/loud", h)
			e.GET("/quiet", h)
			for _, path := range []string{"/loud", "/quiet"} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req = req.WithContext(WithAttrs(req.Context(), slog.String("conn", "c1")))
				e.ServeHTTP(httptest.NewRecorder(), req)
			}
			want := "[conn=c1 request_no=1] true true,[conn=c1 request_no=2] false true"
			if strings.Join(got, ",") != want {
				t.Errorf("handlers saw %q, want %q", strings.Join(got, ","), want)
			}
		})
	}
	if raceEnabled {
		return
	}
	t.Setenv(envSampler, "always_off")
	p, _, _ := setup(t)
	e := gin.New()
	e.Use(Middleware(WithTracerProvider(p.Tracer), WithRegisterer(prometheus.NewRegistry()), WithPropagator(Propagator()),
		WithContextAttr(func(*gin.Context) slog.Attr { return slog.String("request_id", "r1") })))
	e.GET("/orders/:id", func(c *gin.Context) { c.Status(http.StatusNoContent) })
	req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	w := &discardWriter{h: http.Header{}}
	e.ServeHTTP(w, req)
	if n := testing.AllocsPerRun(100, func() { e.ServeHTTP(w, req) }); n != 1 {
		t.Fatalf("%v allocations per unsampled request with an attribute, want 1", n)
	}
}
