package kafkaleg

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// A partition whose fetches fail (its leader away) showed only as a rising bridge_consumer_lag. Each failure is
// counted per partition, the run is logged once when it starts and once when it ends, and readiness names the
// partition once its failures span the grace, not before (a leader election passes within it) and not for one burst
// of them. An idle partition has no record to show it recovered: a quiet spell of fetchQuiet does.
func TestAPartitionThatCannotFetchIsCountedLoggedAndNotReady(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	var logs testenv.LogBuffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	l := New(Options{Metrics: m, Logger: log, Group: "g"})
	p := &partition{leg: l, route: mapping.Route{Topic: "shanhai.orders"}, id: 2, fetch: newFetchLog(log, "shanhai.orders", 2)}
	parts := []*partition{p, {leg: l, route: mapping.Route{Topic: "shanhai.orders"}, id: 0, fetch: newFetchLog(log, "shanhai.orders", 0)}}

	start := time.Now()
	gone := errors.New("[6] Not Leader For Partition")
	for range 3 {
		p.fetchFailed(gone)
	}
	if v, _, err := harness.Int64Metric(reader, "bridge.fetch.errors", "partition", "2"); err != nil || v != 3 {
		t.Errorf("bridge_fetch_errors_total{partition=2} = %d (%v), want 3", v, err)
	}
	if err := unfetched(parts, 20*time.Second, start.Add(25*time.Second)); err != nil {
		t.Errorf("25 s after one burst of failures, their span within a 20 s grace: %v", err)
	}
	p.fetch.FailAt(start.Add(10*time.Second), gone)
	if err := unfetched(parts, 20*time.Second, start.Add(11*time.Second)); err != nil {
		t.Errorf("failures over 10 s, within a 20 s grace: %v", err)
	}
	p.fetch.FailAt(start.Add(21*time.Second), gone)
	err = unfetched(parts, 20*time.Second, start.Add(22*time.Second))
	if err == nil || !strings.Contains(err.Error(), "shanhai.orders partition 2") || !strings.Contains(err.Error(), gone.Error()) ||
		strings.Contains(err.Error(), "partition 0") {
		t.Errorf("failures over 21 s, past a 20 s grace: %v, want an error naming partition 2 alone and its error", err)
	}
	if n := strings.Count(logs.String(), "cannot fetch"); n != 1 {
		t.Errorf("five failures logged %d times, want once: %s", n, logs.String())
	}

	last := p.fetch.Current().Last
	p.fetchSettled(last.Add(fetchQuiet - time.Second))
	if p.fetch.Current().Attempts == 0 || strings.Contains(logs.String(), "fetches the partition again") {
		t.Fatalf("a partition %v after its last failure counted as fetching again: %s", fetchQuiet-time.Second, logs.String())
	}
	p.fetchSettled(last.Add(fetchQuiet))
	if n := strings.Count(logs.String(), "fetches the partition again"); n != 1 {
		t.Errorf("the end of the failures logged %d times, want once: %s", n, logs.String())
	}
	if err := unfetched(parts, 20*time.Second, last.Add(time.Hour)); err != nil {
		t.Errorf("after the failures ended: %v", err)
	}
}
