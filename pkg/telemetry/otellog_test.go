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
