package telemetry

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestNoExemplarForUnsampledRequests: a request that is not sampled (a
// root the sampler drops, or a caller's traceparent with flags 00 under
// parentbased_*) leaves no exemplar: its trace id leads to no trace.
func TestNoExemplarForUnsampledRequests(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_off")
	p, rec, e := setup(t)
	e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/orders/1", nil))
	r := httptest.NewRequest(http.MethodGet, "/orders/2", nil)
	r.Header.Set("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	e.ServeHTTP(httptest.NewRecorder(), r)
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("%d spans recorded, want none", n)
	}
	om := scrape(t, p, true)
	if !strings.Contains(om, `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="/orders/:id"} 2`) {
		t.Fatalf("the two requests were not counted:\n%s", grep(om, "http_server_request_duration_seconds_count"))
	}
	if strings.Contains(om, "trace_id=") {
		t.Errorf("an unsampled request left an exemplar:\n%s", grep(om, "trace_id="))
	}
}
