package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/metric"
)

// lockedBuffer is a log sink the SDK may write to from its own goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestSDKMessagesAreTheServiceJSONLogs: the SDK's own messages (here its
// warning about two instruments of one name and different units) went to
// its default logger, plain text on stderr, instead of the service's JSON
// logger that Setup was given.
func TestSDKMessagesAreTheServiceJSONLogs(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	var out lockedBuffer
	p, err := Setup(context.Background(), Options{ServiceName: "sdklog", Logger: NewLogger(&out, slog.LevelInfo).With("service", "sdklog")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()

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
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	var out lockedBuffer
	p, err := Setup(context.Background(), Options{ServiceName: "sdkinfo", Logger: NewLogger(&out, slog.LevelInfo)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	if strings.Contains(out.String(), "opentelemetry") {
		t.Fatalf("the SDK's Info messages reached a logger at Info: %s", out.String())
	}
}

// TestSDKDebugIsBelowDebug: the SDK's Debug (V(8)) writes every collection
// with all its data; a service logging at debug leaves it out, and keeps the
// SDK's Info (a provider made) at Debug.
func TestSDKDebugIsBelowDebug(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	var out lockedBuffer
	p, err := Setup(context.Background(), Options{ServiceName: "sdkdebug", Logger: NewLogger(&out, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	if _, err := p.Registry.Gather(); err != nil { // a scrape: the SDK's reader collects
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "MeterProvider created") || strings.Contains(s, "collection") {
		t.Fatalf("at debug: want the SDK's provider lines and none of its collections, got %s", s)
	}
}
