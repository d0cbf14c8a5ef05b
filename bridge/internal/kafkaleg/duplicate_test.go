package kafkaleg_test

import (
	"context"
	"testing"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestLegACountsWhatJetStreamsDedupDropped: JetStream answers a publish whose Nats-Msg-Id it has seen within its
// duplicate window with a PubAck marked duplicate, and stores nothing. Leg A counted that
// bridge_messages_total{leg="kafka-nats",result="ok"} and recorded its hop (from the Kafka append, however long ago): a
// replay after a restart or a rebalance counted every replayed message twice, and a record the stream dropped for an
// id another record had used (a Kafka cluster or topic that started its offsets again within the window, bridge
// README) looked carried. It is counted result="duplicate", with no hop, as leg B counts what Pulsar's dedup drops.
func TestLegACountsWhatJetStreamsDedupDropped(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	const n = 20
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, harness.Event(i, 1, 50))
	}
	produce(t, e, msgs)

	first := sdkmetric.NewManualReader()
	e.reader = first
	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 4096))
	waitCommittedEnds(t, e, group, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// A second group replays the partition: every publish is a duplicate in JetStream's eyes.
	replay := sdkmetric.NewManualReader()
	e.reader = replay
	group2 := "bridgetest-" + harness.ID()
	stop = start(e.leg(t, group2, 4096))
	waitCommittedEnds(t, e, group2, 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if info, err := e.stream.Info(context.Background()); err != nil || info.State.Msgs != n {
		t.Fatalf("stream info %v (%v), want %d messages", info, err, n)
	}

	for _, c := range []struct {
		name            string
		r               sdkmetric.Reader
		ok, dup, hopped int64
	}{{"first group", first, n, 0, n}, {"replay", replay, 0, n, 0}} {
		for result, want := range map[string]int64{"ok": c.ok, "duplicate": c.dup} {
			if got, _, err := harness.Int64Metric(c.r, "bridge.messages", "result", result); err != nil || got != want {
				t.Errorf("%s: bridge_messages_total{result=%q} = %d (%v), want %d", c.name, result, got, err, want)
			}
		}
		if got := hops(t, c.r); got != c.hopped {
			t.Errorf("%s: bridge_hop_duration_seconds counted %d messages, want %d", c.name, got, c.hopped)
		}
	}
}

// hops is how many hop durations r's leg recorded.
func hops(t *testing.T, r sdkmetric.Reader) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if h, ok := m.Data.(metricdata.Histogram[float64]); ok && m.Name == "bridge.hop.duration" {
				for _, dp := range h.DataPoints {
					n += int64(dp.Count)
				}
			}
		}
	}
	return n
}
