package kafkaleg_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestLegAShowsAPartitionItCannotFetch: a partition the generation assigned but the broker refuses to serve (here:
// the group's committed offset lies past the partition's end, as after the topic was deleted and created again; a
// partition whose leader is away is refused likewise) made kafka-go's reader retry by itself, reporting each refusal
// to its error logger alone, which leg A left at nil: the partition carried nothing, and only its lag could say so.
// Each refusal must be counted in bridge_fetch_errors_total for the partition, the run logged once, and readiness
// must name the partition once its refusals span the grace (two session timeouts).
func TestLegAShowsAPartitionItCannotFetch(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	e.reader = sdkmetric.NewManualReader()
	logs := &testenv.LogBuffer{}
	e.log = slog.New(slog.NewJSONHandler(logs, nil))
	group := "bridgetest-" + harness.ID()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &kafka.Client{Addr: kafka.TCP(e.brokers...), Timeout: 10 * time.Second}
	res, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{e.topic: {{Partition: 0, Offset: 1000}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Topics[e.topic] {
		if p.Error != nil {
			t.Fatalf("committing offset 1000 of the empty partition: %v", p.Error)
		}
	}

	l := running(t, e, group)
	waitFor(t, "a refused fetch counted", func() bool {
		v, _, err := harness.Int64Metric(e.reader, "bridge.fetch.errors", "topic", e.topic)
		if err != nil {
			t.Fatal(err)
		}
		return v > 0
	})
	var notReady error
	waitFor(t, "Ready naming the partition", func() bool {
		notReady = l.Ready(ctx)
		return notReady != nil && strings.Contains(notReady.Error(), e.topic+" partition 0")
	})
	t.Logf("not ready: %v", notReady)
	if n := strings.Count(logs.String(), "cannot fetch the partition"); n != 1 {
		t.Errorf("the refused fetches were logged %d times, want once: %s", n, logs.String())
	}
}
