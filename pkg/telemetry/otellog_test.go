package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// setupLogging is Setup with a logger at level writing JSON to the buffer it
// returns, which the SDK may write to from its own goroutines.
func setupLogging(t *testing.T, level slog.Level) (*Provider, *testenv.LogBuffer) {
	t.Helper()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	out := &testenv.LogBuffer{}
	p, err := Setup(context.Background(), Options{ServiceName: "sdklog", Logger: NewLogger(out, level).With("service", "sdklog")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, out
}

// TestSDKMessagesAreTheServiceJSONLogs: the SDK's own messages (here its
// warning about two instruments of one name and different units) went to
// its default logger, plain text on stderr, instead of the service's JSON
// logger that Setup was given.
func TestSDKMessagesAreTheServiceJSONLogs(t *testing.T) {
	p, out := setupLogging(t, slog.LevelInfo)

	m := p.Meter.Meter("sdklog")
	if _, err := m.Int64Counter("shanhai.test.twice", metric.WithUnit("s")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Float64Counter("shanhai.test.twice", metric.WithUnit("ms")); err != nil {
		t.Fatal(err)
	}
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(l, "duplicate") {
			line = decodeLine(t, bytes.NewBufferString(l))
		}
	}
	if line == nil {
		t.Fatalf("no JSON record of the SDK's duplicate-instrument warning in the service's log: %q", out.String())
	}
	for k, want := range map[string]any{"level": "WARN", "logger": "opentelemetry", "service": "sdklog"} {
		if line[k] != want {
			t.Errorf("%s = %v, want %v (record %v)", k, line[k], want, line)
		}
	}
}

// TestSDKInfoIsDebug: the SDK logs each provider's whole configuration at
// its Info (V(4)) on every start; a service logging at Info leaves it out.
func TestSDKInfoIsDebug(t *testing.T) {
	_, out := setupLogging(t, slog.LevelInfo)
	if strings.Contains(out.String(), "opentelemetry") {
		t.Fatalf("the SDK's Info messages reached a logger at Info: %s", out.String())
	}
}

// TestSDKDebugIsBelowDebug: the SDK's Debug (V(8)) writes every collection
// with all its data; a service logging at debug leaves it out, and keeps the
// SDK's Info (a provider made) at Debug.
func TestSDKDebugIsBelowDebug(t *testing.T) {
	p, out := setupLogging(t, slog.LevelDebug)
	if _, err := p.Registry.Gather(); err != nil { // a scrape: the SDK's reader collects
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "MeterProvider created") || strings.Contains(s, "collection") {
		t.Fatalf("at debug: want the SDK's provider lines and none of its collections, got %s", s)
	}
}
