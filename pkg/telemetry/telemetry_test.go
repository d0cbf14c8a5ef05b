package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// setup installs a provider whose spans a recorder keeps, and an engine with
// the middleware and three routes.
func setup(t *testing.T) (*Provider, *tracetest.SpanRecorder, *gin.Engine) {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	rec := tracetest.NewSpanRecorder()
	p, err := Setup(context.Background(), Options{ServiceName: "test", ServiceVersion: "1.2.3", SpanProcessors: []sdktrace.SpanProcessor{rec}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(Middleware())
	e.GET("/orders/:id", func(c *gin.Context) {
		// The handler sees the server span in the request context.
		if !trace.SpanFromContext(c.Request.Context()).SpanContext().IsValid() {
			c.Status(http.StatusTeapot)
			return
		}
		c.Status(http.StatusOK)
	})
	e.POST("/fail", func(c *gin.Context) { c.Status(http.StatusBadGateway) })
	return p, rec, e
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestMiddlewareServerSpan(t *testing.T) {
	_, rec, e := setup(t)
	req := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	req.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: handler did not see a span in its context", w.Code)
	}
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "GET /orders/:id" {
		t.Errorf("span name %q, want %q", s.Name(), "GET /orders/:id")
	}
	if s.SpanKind() != trace.SpanKindServer {
		t.Errorf("span kind %v, want server", s.SpanKind())
	}
	if got := s.SpanContext().TraceID().String(); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace id %s: the caller's trace was not continued", got)
	}
	if got := s.Parent().SpanID().String(); got != "00f067aa0ba902b7" {
		t.Errorf("parent span %s, want the caller's", got)
	}
	a := attrs(s)
	for k, want := range map[attribute.Key]string{
		"http.request.method":       "GET",
		"http.route":                "/orders/:id",
		"url.path":                  "/orders/42",
		"url.scheme":                "http",
		"http.response.status_code": "200",
	} {
		if got := a[k].String(); got != want {
			t.Errorf("attribute %s = %q, want %q", k, got, want)
		}
	}
	if s.Status().Code == codes.Error {
		t.Error("a 200 marked the span as an error")
	}
}

func TestMiddlewareMarksServerErrorsOnly(t *testing.T) {
	_, rec, e := setup(t)
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/fail", nil))
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/nowhere", nil))
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2", len(spans))
	}
	if spans[0].Status().Code != codes.Error {
		t.Error("a 502 did not mark the span as an error")
	}
	// An unmatched path has no route template: the name is the method alone
	// (never the raw path, which would explode span-name cardinality).
	if spans[1].Name() != "GET" {
		t.Errorf("unmatched request span name %q, want %q", spans[1].Name(), "GET")
	}
	if _, ok := attrs(spans[1])["http.route"]; ok {
		t.Error("unmatched request has an http.route attribute")
	}
	if spans[1].Status().Code == codes.Error {
		t.Error("a 404 marked the span as an error")
	}
}

func scrape(t *testing.T, p *Provider, openMetrics bool) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if openMetrics {
		req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	}
	w := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(w, req)
	body, _ := io.ReadAll(w.Body)
	return string(body)
}

func TestDurationHistogramAndExemplar(t *testing.T) {
	p, rec, e := setup(t)
	for range 3 {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/orders/7", nil))
	}
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/fail", nil))

	text := scrape(t, p, false)
	count := regexp.MustCompile(`(?m)^http_server_request_duration_seconds_count\{([^}]*)\} (\d+)$`)
	found := map[string]string{}
	for _, m := range count.FindAllStringSubmatch(text, -1) {
		found[m[1]] = m[2]
	}
	okLabels := `http_request_method="GET",http_response_status_code="200",http_route="/orders/:id"`
	if found[okLabels] != "3" {
		t.Errorf("count for %s = %q, want 3; series: %v", okLabels, found[okLabels], found)
	}
	errLabels := `error_type="502",http_request_method="POST",http_response_status_code="502",http_route="/fail"`
	if found[errLabels] != "1" {
		t.Errorf("count for %s = %q, want 1; series: %v", errLabels, found[errLabels], found)
	}

	// Exemplars only exist in OpenMetrics; the first sampled request of a
	// bucket leaves its trace id there.
	om := scrape(t, p, true)
	ex := regexp.MustCompile(`http_server_request_duration_seconds_bucket\{[^}]*http_route="/orders/:id"[^}]*\} \d+ # \{[^}]*trace_id="([0-9a-f]{32})"`)
	m := ex.FindStringSubmatch(om)
	if m == nil {
		t.Fatalf("no exemplar with a trace id in OpenMetrics output:\n%s", grep(om, "http_server_request_duration_seconds_bucket"))
	}
	ids := map[string]bool{}
	for _, s := range rec.Ended() {
		ids[s.SpanContext().TraceID().String()] = true
	}
	if !ids[m[1]] {
		t.Errorf("exemplar trace id %s is not one of the request spans %v", m[1], ids)
	}
}

func TestOTelMetricsAreExposed(t *testing.T) {
	p, _, _ := setup(t)
	c, err := otel.Meter("test").Int64Counter("orders.created")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 5)
	if text := scrape(t, p, false); !regexp.MustCompile(`(?m)^orders_created_total\{.*\} 5$`).MatchString(text) {
		t.Errorf("OTel counter not on /metrics:\n%s", grep(text, "orders_created"))
	}
}

func TestSamplerFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_off")
	_, rec, e := setup(t)
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/orders/1", nil))
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("OTEL_TRACES_SAMPLER=always_off still recorded %d spans", n)
	}
}

func TestServiceNameFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	_, rec, e := setup(t)
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/orders/1", nil))
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("got %d spans", len(spans))
	}
	var name, version string
	for _, kv := range spans[0].Resource().Attributes() {
		switch kv.Key {
		case "service.name":
			name = kv.Value.AsString()
		case "service.version":
			version = kv.Value.AsString()
		}
	}
	if name != "from-env" || version != "1.2.3" {
		t.Errorf("resource service.name=%q service.version=%q, want from-env and 1.2.3", name, version)
	}
}

func TestUnknownMethodIsFolded(t *testing.T) {
	if got := methodName("BREW"); got != "_OTHER" {
		t.Errorf("methodName(BREW) = %q, want _OTHER", got)
	}
	if got := methodName("PATCH"); got != "PATCH" {
		t.Errorf("methodName(PATCH) = %q", got)
	}
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestWithoutSpans(t *testing.T) {
	p, rec, _ := setup(t)
	e := gin.New()
	e.Use(Middleware(WithoutSpans("/healthz")))
	e.GET("/healthz", func(c *gin.Context) { c.Status(http.StatusOK) })
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans for a route listed in WithoutSpans", n)
	}
	if !strings.Contains(scrape(t, p, false), `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/healthz"} 1`) {
		t.Error("route without spans was not measured")
	}
}

func TestWithContextFunc(t *testing.T) {
	_, _, _ = setup(t)
	type key struct{}
	e := gin.New()
	e.Use(Middleware(WithoutSpans("/quiet"), WithContextFunc(func(c *gin.Context, ctx context.Context) context.Context {
		return context.WithValue(ctx, key{}, c.Request.URL.Path)
	})))
	var got []string
	var spanSeen []bool
	h := func(c *gin.Context) {
		v, _ := c.Request.Context().Value(key{}).(string)
		got = append(got, v)
		spanSeen = append(spanSeen, trace.SpanFromContext(c.Request.Context()).SpanContext().IsValid())
	}
	e.GET("/loud", h)
	e.GET("/quiet", h)
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/loud", nil))
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/quiet", nil))
	if strings.Join(got, ",") != "/loud,/quiet" {
		t.Errorf("context values %v: the func did not run for every request", got)
	}
	if len(spanSeen) != 2 || !spanSeen[0] || spanSeen[1] {
		t.Errorf("span in context %v, want a span on /loud only", spanSeen)
	}
}

// TestMiddlewareExtractsBaggageWithoutTraceparent: the middleware skips
// extraction when a request has neither W3C header, so a request with only
// baggage must still deliver it (and continue no trace).
func TestMiddlewareExtractsBaggageWithoutTraceparent(t *testing.T) {
	_, rec, _ := setup(t)
	if _, ok := otel.GetTextMapPropagator().(w3c); !ok {
		t.Fatalf("Setup installed %T, not Propagator(): the skip under test is not exercised", otel.GetTextMapPropagator())
	}
	e := gin.New()
	e.Use(Middleware())
	var got string
	e.GET("/b", func(c *gin.Context) { got = baggage.FromContext(c.Request.Context()).Member("tenant").Value() })
	req := httptest.NewRequest(http.MethodGet, "/b", nil)
	req.Header.Set("baggage", "tenant=acme")
	e.ServeHTTP(httptest.NewRecorder(), req)
	if got != "acme" {
		t.Fatalf("handler saw baggage tenant=%q, want acme", got)
	}
	if s := rec.Ended(); len(s) != 1 || s[0].Parent().IsValid() {
		t.Fatalf("want one root span, got %d spans", len(s))
	}
}
