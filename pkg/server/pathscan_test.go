package server

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// TestPathScanAddsNoSeries: a client walking paths (a scanner, ids in the
// path) adds no series to /metrics and no span names: requests are counted
// under their route template, and the ones no route matches (404, 405)
// under the empty route, however many distinct paths they had. The raw path
// is in the access log only.
func TestPathScanAddsNoSeries(t *testing.T) {
	s, rec := tracedServer(t)
	s.Router().GET("/orders/:id", func(c *gin.Context) { c.Status(http.StatusOK) })
	const n = 30
	for i := range n {
		do(s.Handler(), http.MethodGet, fmt.Sprintf("/orders/%d", i), nil)
		do(s.Handler(), http.MethodGet, fmt.Sprintf("/scan%d/.env", i), nil)
		do(s.Handler(), http.MethodPost, fmt.Sprintf("/orders/%d", i), nil)
	}

	metrics := do(s.Handler(), http.MethodGet, "/metrics", nil).Body.String()
	counts := requestCounts(metrics)
	for labels, want := range map[string]string{
		`http_request_method="GET",http_response_status_code="200",http_route="/orders/:id"`: "30",
		// The empty route: Prometheus leaves an empty label out.
		`http_request_method="GET",http_response_status_code="404"`:  "30",
		`http_request_method="POST",http_response_status_code="405"`: "30",
	} {
		if counts[labels] != want {
			t.Errorf("count{%s} = %q, want %s; series: %v", labels, counts[labels], want, counts)
		}
	}
	if len(counts) != 3 {
		t.Errorf("%d series, want 3: %v", len(counts), counts)
	}
	if strings.Contains(metrics, "scan") || strings.Contains(metrics, `"/orders/1"`) {
		t.Errorf("a raw path reached /metrics:\n%s", metrics)
	}
	names := map[string]int{}
	for _, sp := range rec.Ended() {
		names[sp.Name()]++
	}
	if len(names) > 3 {
		t.Errorf("span names: %v, want one per route and method", names)
	}
	for name := range names {
		if strings.Contains(name, "scan") || regexp.MustCompile(`/orders/\d`).MatchString(name) {
			t.Errorf("span name %q carries a raw path", name)
		}
	}
}
