package app_test

import (
	"os"
	"testing"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestMain sets what every bridge the tests start shares and runs the tests
// side by side. The tests start their bridges in parallel, so nothing a single
// test needs may go through the process environment (t.Setenv refuses parallel
// tests): each loads its configuration from its own variables, and only the
// OpenTelemetry exporters, which telemetry.Setup reads from the environment,
// are switched off here, once, for all of them. Most of the tests hold an
// outage of 40 s on purpose; eight at once wait together.
func TestMain(m *testing.M) {
	for _, k := range []string{"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"} {
		if err := os.Setenv(k, "none"); err != nil {
			panic(err)
		}
	}
	harness.WaitingTestsInParallel(8)
	os.Exit(m.Run())
}
