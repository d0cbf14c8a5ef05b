package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.opentelemetry.io/otel/attribute"
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

// spansOverLimit ends n spans of p each over the SDK's attribute limit
// (128 by default): the SDK warns once per span.
func spansOverLimit(p *Provider, n int) {
	tr := p.Tracer.Tracer("sdklog")
	over := make([]attribute.KeyValue, 129)
	for i := range over {
		over[i] = attribute.Int("a"+strconv.Itoa(i), i)
	}
	for range n {
		_, span := tr.Start(context.Background(), "over")
		span.SetAttributes(over...)
		span.End()
	}
}

// TestSDKLimitWarningOncePerMinute: the SDK warns of a span's attribute
// limit reached once per span, and every such warning reached the log at
// Warn: a handler setting 129 attributes wrote a line per request. One of
// a kind is written a minute, the next one counting those held back.
func TestSDKLimitWarningOncePerMinute(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	p, out := setupLogging(t, slog.LevelInfo)
	spansOverLimit(p, 20)
	if n := strings.Count(out.String(), "limit reached"); n != 1 {
		t.Fatalf("%d warnings for 20 spans over the limit, want 1: %s", n, out.String())
	}

	// The minute, on a clock of the test's: the next warning is written,
	// saying how many were held back.
	now := time.Now()
	var buf testenv.LogBuffer
	log := logr.FromSlogHandler(sdkLevels{NewLogger(&buf, slog.LevelInfo).Handler(), newRepeats(time.Minute, func() time.Time { return now })})
	for range 5 {
		log.V(1).Info("limit reached: dropping trace Span attributes")
	}
	log.V(1).Info("another warning")
	now = now.Add(time.Minute)
	log.V(1).Info("limit reached: dropping trace Span attributes")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want the first warning, the other kind, and one a minute later: %s", len(lines), buf.String())
	}
	if last := decodeLine(t, bytes.NewBufferString(lines[2])); last["suppressed"] != float64(4) || last["level"] != "WARN" {
		t.Fatalf("a minute later: %v, want a WARN with suppressed 4", last)
	}
}

// TestSDKWarningsHeldBackAreCountedUnderConcurrency: the SDK warns from
// every goroutine that ends a span. Every warning of a kind held back in
// its minute is counted once, whichever goroutine it came from, and past
// repeatKinds kinds a new one is written, not remembered.
func TestSDKWarningsHeldBackAreCountedUnderConcurrency(t *testing.T) {
	now := time.Now()
	var buf testenv.LogBuffer
	h := sdkLevels{NewLogger(&buf, slog.LevelInfo).Handler(), newRepeats(time.Minute, func() time.Time { return now })}
	log := logr.FromSlogHandler(h)
	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range each {
				log.V(1).Info("limit reached: dropping trace Span attributes")
			}
		})
	}
	wg.Wait()
	for i := range repeatKinds + 10 {
		log.V(1).Info("another kind", "n", i)
	}
	if n := len(h.repeats.kinds); n != repeatKinds {
		t.Fatalf("%d kinds remembered, want the bound %d", n, repeatKinds)
	}
	now = now.Add(time.Minute)
	log.V(1).Info("limit reached: dropping trace Span attributes")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1+repeatKinds+10+1 {
		t.Fatalf("%d lines, want one of the first kind, each other kind, and one a minute later", len(lines))
	}
	if last := decodeLine(t, bytes.NewBufferString(lines[len(lines)-1])); last["suppressed"] != float64(goroutines*each-1) {
		t.Fatalf("a minute later: %v, want suppressed %d", last, goroutines*each-1)
	}
}

// TestSDKWarningKindsLongQuietAreForgotten: once repeatKinds kinds had been
// seen, ever, every new kind was written each time it came, for the life of
// the process, though the kinds remembered had been quiet for hours. A kind
// written over a minute ago with none held back since carries nothing to
// remember: it makes room for a new one.
func TestSDKWarningKindsLongQuietAreForgotten(t *testing.T) {
	now := time.Now()
	var buf testenv.LogBuffer
	h := sdkLevels{NewLogger(&buf, slog.LevelInfo).Handler(), newRepeats(time.Minute, func() time.Time { return now })}
	log := logr.FromSlogHandler(h)
	for i := range repeatKinds {
		log.V(1).Info("an old kind", "n", i)
	}
	log.V(1).Info("an old kind", "n", 0) // held back: its count is kept for its next line
	now = now.Add(time.Hour)
	for range 5 {
		log.V(1).Info("a new kind")
	}
	if n := strings.Count(buf.String(), "a new kind"); n != 1 {
		t.Fatalf("a new kind written %d times in its minute, want once", n)
	}
	if n := len(h.repeats.kinds); n > repeatKinds {
		t.Fatalf("%d kinds remembered, over the bound %d", n, repeatKinds)
	}
	log.V(1).Info("an old kind", "n", 0)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if last := decodeLine(t, bytes.NewBufferString(lines[len(lines)-1])); last["suppressed"] != float64(1) {
		t.Fatalf("the kind with one held back, an hour later: %v, want suppressed 1", last)
	}
}

// TestSDKWarningKindsFullAreNotLookedAtPerWarning: with the set of kinds
// full and none to forget (each holding a count, or written within the
// minute), forget looked at all 256 under the lock for every new kind's
// warning, and found nothing each time. It now looks again only when a kind
// can first have gone quiet: a kind the test makes quiet behind its back is
// not seen before then, and the one that really goes quiet is, on time.
func TestSDKWarningKindsFullAreNotLookedAtPerWarning(t *testing.T) {
	start := time.Now()
	now := start
	var buf testenv.LogBuffer
	h := sdkLevels{NewLogger(&buf, slog.LevelInfo).Handler(), newRepeats(time.Minute, func() time.Time { return now })}
	log := logr.FromSlogHandler(h)
	for i := range repeatKinds {
		log.V(1).Info("an old kind", "n", i)
		if i > 0 {
			log.V(1).Info("an old kind", "n", i) // held back: kept for its count
		}
	}
	now = start.Add(30 * time.Second)
	log.V(1).Info("a new kind", "n", 1) // looks at every kind: none can go before start+1m
	kinds := h.repeats.kinds
	for _, k := range kinds {
		if k.suppressed > 0 {
			k.last, k.suppressed = start.Add(-time.Hour), 0 // one forget would drop, if it looked
			break
		}
	}
	log.V(1).Info("a new kind", "n", 2)
	if len(kinds) != repeatKinds || kinds[`a new kind`+"\x00n=2"] != nil {
		t.Fatalf("a second new kind in the same minute had the kinds looked at again (%d remembered)", len(kinds))
	}
	now = start.Add(time.Minute) // "n", 0 has been quiet a minute, with nothing held back
	log.V(1).Info("a new kind", "n", 3)
	if kinds[`a new kind`+"\x00n=3"] == nil {
		t.Fatal("a new kind once the first old one went quiet was not remembered")
	}
}

// TestSDKWarningsHeldBackAreWrittenAtShutdown: a kind that went quiet
// never wrote its held-back count (only its next line says it), so a
// process's last minute of SDK warnings was lost at exit, and the kind kept
// its slot for ever. Provider.Shutdown writes each held count once, on a
// line of its kind, and frees the slots.
func TestSDKWarningsHeldBackAreWrittenAtShutdown(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "always_on")
	p, out := setupLogging(t, slog.LevelInfo)
	spansOverLimit(p, 4)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.Contains(l, "limit reached") {
			lines = append(lines, decodeLine(t, bytes.NewBufferString(l)))
		}
	}
	if len(lines) != 2 || lines[0]["suppressed"] != nil || lines[1]["suppressed"] != float64(3) ||
		lines[1]["level"] != "WARN" || lines[1]["logger"] != "opentelemetry" {
		t.Fatalf("limit warnings: %v, want the first and, at shutdown, a WARN of its kind with suppressed 3", lines)
	}
	if n := len(p.warnings.kinds); n != 0 {
		t.Fatalf("%d kinds remembered after the flush, want none", n)
	}
}
