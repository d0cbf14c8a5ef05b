package server

import (
	"context"
	"regexp"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// tracedServer is a test server on a telemetry set-up of its own, whose
// ended spans rec holds, for tests of what requests leave in /metrics and
// in traces.
func tracedServer(t *testing.T) (s *Server, rec *tracetest.SpanRecorder) {
	t.Helper()
	rec = tracetest.NewSpanRecorder()
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "server-test",
		SpanProcessors: []sdktrace.SpanProcessor{rec}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	s, _ = newTestServer(t, Options{Telemetry: p})
	return s, rec
}

var requestCount = regexp.MustCompile(`(?m)^http_server_request_duration_seconds_count\{([^}]*)\} (\d+)$`)

// requestCounts is the request count of each http.server.request.duration
// series in a /metrics page, by its labels.
func requestCounts(metrics string) map[string]string {
	counts := map[string]string{}
	for _, m := range requestCount.FindAllStringSubmatch(metrics, -1) {
		counts[m[1]] = m[2]
	}
	return counts
}
