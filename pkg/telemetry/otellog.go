package telemetry

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
)

// sdkLogger is the logger the OpenTelemetry SDK writes its own messages
// to (otel.SetLogger): log's handler, so they are the service's JSON
// records with its fields, named logger=opentelemetry. Left alone, the SDK
// printed them as plain text on stderr (its default, a standard library
// log.Logger), beside the JSON every other line is: a metric stream two
// instruments defined differently, a span's attribute limit reached.
func sdkLogger(log *slog.Logger) logr.Logger {
	return logr.FromSlogHandler(sdkLevels{log.Handler()}).WithName("opentelemetry")
}

// sdkLevels gives the SDK's verbosities their slog levels. logr's bridge
// maps V(n) to slog level -n, so the SDK's warnings (V(1)) came out at a
// level below Info and were dropped by a logger at Info. OpenTelemetry's
// convention (otel.SetLogger) is V(1) Warn, V(4) Info and V(8) Debug. Its
// Info is a provider's configuration when it is made, a few lines a start:
// Debug here, as a service's Info says what the service did. Its Debug is
// every export and every collection with all its data (a /metrics scrape
// is one): sdkTrace, below any LOG_LEVEL, or debug logging would be
// flooded. Errors come at slog's Error level already.
type sdkLevels struct{ next slog.Handler }

// sdkTrace is the level of the SDK's Debug messages: under slog.LevelDebug,
// the lowest a service's LOG_LEVEL sets.
const sdkTrace = slog.LevelDebug - 4

func sdkLevel(l slog.Level) slog.Level {
	switch {
	case l >= slog.LevelInfo:
		return l
	case l > -4: // V(1) to V(3)
		return slog.LevelWarn
	case l > -8: // V(4) to V(7)
		return slog.LevelDebug
	default:
		return sdkTrace
	}
}

func (h sdkLevels) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, sdkLevel(l))
}

func (h sdkLevels) Handle(ctx context.Context, r slog.Record) error {
	r.Level = sdkLevel(r.Level)
	return h.next.Handle(ctx, r)
}

func (h sdkLevels) WithAttrs(as []slog.Attr) slog.Handler { return sdkLevels{h.next.WithAttrs(as)} }

func (h sdkLevels) WithGroup(name string) slog.Handler { return sdkLevels{h.next.WithGroup(name)} }
