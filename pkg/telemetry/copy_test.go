package telemetry

import (
	"context"
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
