package server

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

// TestPanicsRecordedOnce: recovery sits inside telemetry's middleware, which
// finishes a request from a defer when a panic passes it (a6994970). A
// panic recovery answers is recorded once, as its 500, not again by that
// defer; http.ErrAbortHandler, which recovery re-raises for net/http to cut
// the connection, reaches net/http unchanged and is recorded once too (its
// span used to be left unended and the request out of the metric).
func TestPanicsRecordedOnce(t *testing.T) {
	s, rec := tracedServer(t)
	s.Router().GET("/bug", func(*gin.Context) { panic("handler bug") })
	s.Router().GET("/abort", func(*gin.Context) { panic(http.ErrAbortHandler) })

	if w := do(s.Handler(), http.MethodGet, "/bug", nil); w.Code != http.StatusInternalServerError {
		t.Errorf("GET /bug: %d, want 500", w.Code)
	}
	func() {
		defer func() {
			if r := recover(); r != http.ErrAbortHandler {
				t.Errorf("GET /abort: net/http got panic %v, want http.ErrAbortHandler", r)
			}
		}()
		s.Handler().ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/abort", nil))
	}()

	counts := requestCounts(do(s.Handler(), http.MethodGet, "/metrics", nil).Body.String())
	for _, route := range []string{"/bug", "/abort"} {
		labels := `error_type="500",http_request_method="GET",http_response_status_code="500",http_route="` + route + `"`
		if counts[labels] != "1" {
			t.Errorf("GET %s counted %q times as a 500, want once; series: %v", route, counts[labels], counts)
		}
	}
	names := map[string]int{}
	for _, sp := range rec.Ended() {
		names[sp.Name()]++
	}
	if names["GET /bug"] != 1 || names["GET /abort"] != 1 {
		t.Errorf("ended spans by name %v, want GET /bug and GET /abort once each", names)
	}
}
