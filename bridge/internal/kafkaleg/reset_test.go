package kafkaleg

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/commit"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// TestAResetPositionsLagIsFromThePartitionsEnd: a reset within a generation (the topic recreated while leg A read it)
// left the high watermark the old topic's last record came with, so while the new session waited for a record,
// bridge_consumer_lag was that watermark minus the reset position: 1000 here, for a partition with nothing to carry,
// until a record of the new topic arrived. The check's own answer says where the partition ends.
func TestAResetPositionsLagIsFromThePartitionsEnd(t *testing.T) {
	t.Parallel()
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	topic := "bridgetest." + harness.ID() + ".orders"
	if err := harness.CreateTopic(ctx, brokers, topic, 1); err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	m, err := metrics.New(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := New(Options{Brokers: brokers, Metrics: m, Logger: log, Group: "g"})
	p := &partition{leg: l, route: mapping.Route{Topic: topic}, id: 0, fetch: newFetchLog(log, topic, 0)}
	p.hwm.Store(1000) // the old topic's last record's

	pos, reset := p.inRange(ctx, 1000)
	if pos != 0 || !reset {
		t.Fatalf("inRange(1000) on an empty partition = %d, %v; want 0, true", pos, reset)
	}
	p.tracker.Store(commit.New(pos))
	p.fetching.Store(true) // the new session waits for a record
	l.refreshLag(ctx, []*partition{p})
	if v, ok, err := harness.Int64Metric(reader, "bridge.consumer.lag", "topic", topic); err != nil || !ok || v != 0 {
		t.Errorf("bridge_consumer_lag after a reset to 0 of an empty partition = %d (set %v, %v), want 0", v, ok, err)
	}
}

// TestOutOfRangeLogsAreKafkaGos: leg A tells a position out of range met mid-read by the text of kafka-go's error log
// lines (outOfRangeLogs); a kafka-go that words them otherwise would leave such a partition retrying for ever, counted
// as failed fetches, with no reset. The texts must be in the reader of the kafka-go this module builds with.
func TestOutOfRangeLogsAreKafkaGos(t *testing.T) {
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/segmentio/kafka-go").Output()
	if err != nil {
		t.Fatalf("locating kafka-go's source: %v", err)
	}
	src, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(dir)), "reader.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range outOfRangeLogs {
		if !strings.Contains(string(src), `log.Printf("`+prefix) {
			t.Errorf("kafka-go's reader.go logs no line starting %q: update outOfRangeLogs (reset.go)", prefix)
		}
	}
}
