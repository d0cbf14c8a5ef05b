package telemetry

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/codes"
)

// TestPanicPastTheMiddlewareIsRecorded: a handler's panic that a recovery
// outside Middleware stops (gin's, used first) ended neither the span nor
// the request's metric, so the 500s a panicking handler gave were in no
// trace and no histogram. A route without spans records its metric too.
func TestPanicPastTheMiddlewareIsRecorded(t *testing.T) {
	p, rec, _ := setup(t)
	e := gin.New()
	e.Use(gin.RecoveryWithWriter(io.Discard), Middleware(WithoutSpans("/quiet")))
	e.GET("/boom/:id", func(*gin.Context) { panic("handler bug") })
	e.GET("/quiet", func(*gin.Context) { panic("handler bug") })
	for _, path := range []string{"/boom/1", "/quiet"} {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.Code != http.StatusInternalServerError {
			t.Fatalf("GET %s: %d, want gin's recovery's 500", path, w.Code)
		}
	}

	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Name() != "GET /boom/:id" {
		t.Fatalf("ended spans %v, want the one of GET /boom/:id", spans)
	}
	if st := spans[0].Status(); st.Code != codes.Error {
		t.Errorf("span status %v, want an error", st)
	}
	if v := attrs(spans[0])["http.response.status_code"]; v.AsInt64() != 500 {
		t.Errorf("span's http.response.status_code %v, want 500", v.AsInt64())
	}
	text := scrape(t, p, false)
	for _, route := range []string{"/boom/:id", "/quiet"} {
		want := `error_type="500",http_request_method="GET",http_response_status_code="500",http_route="` + route + `"} 1`
		if !strings.Contains(text, "http_server_request_duration_seconds_count{"+want) {
			t.Errorf("no 500 counted for %s:\n%s", route, grep(text, "http_server_request_duration_seconds_count"))
		}
	}
}
