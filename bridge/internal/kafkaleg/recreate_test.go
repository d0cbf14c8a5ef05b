package kafkaleg_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// messages sums bridge.messages for one result.
func messages(t *testing.T, r *sdkmetric.ManualReader, result string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "bridge.messages" {
				for _, dp := range sum.DataPoints {
					if v, _ := dp.Attributes.Value(attribute.Key("result")); v.AsString() == result {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}

// TestLegARecreatedStreamIsNoOrderViolation: a stream deleted and created again restarts its sequence at 1, so leg
// A's check that a partition's sequences rise logged "stream order violated" for every partition afterwards. Both
// ways it meets one: idle through the recreation (the next publish simply lands at sequence 1), and publishing while
// the stream is gone (refused, the partition restarts, and its first confirmation is in the new stream).
func TestLegARecreatedStreamIsNoOrderViolation(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	reader := sdkmetric.NewManualReader()
	e.reader = reader
	stop := start(e.leg(t, "g-"+harness.ID(), 1<<20))
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	batch := func(from, n int) []kafka.Message {
		var msgs []kafka.Message
		for i := from; i < from+n; i++ {
			msgs = append(msgs, harness.Event(i, 1, 200))
		}
		return msgs
	}
	recreate := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := e.js.DeleteStream(ctx, e.streamCf.Name); err != nil {
			t.Fatal(err)
		}
		var err error
		if e.stream, err = e.js.CreateStream(ctx, e.streamCf); err != nil {
			t.Fatal(err)
		}
	}
	produce(t, e, batch(0, 20))
	waitStream(t, e, 20)

	recreate() // idle
	produce(t, e, batch(20, 5))
	waitStream(t, e, 5)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.js.DeleteStream(ctx, e.streamCf.Name); err != nil {
		t.Fatal(err)
	}
	produce(t, e, batch(25, 5))
	time.Sleep(500 * time.Millisecond) // leg A tries to publish to the missing stream (no responders)
	var err error
	if e.stream, err = e.js.CreateStream(ctx, e.streamCf); err != nil {
		t.Fatal(err)
	}
	waitStream(t, e, 5)

	if v := messages(t, reader, "order_violation"); v != 0 {
		t.Fatalf("%d order violations reported for a recreated stream", v)
	}
	if ok := messages(t, reader, "ok"); ok != 30 {
		t.Fatalf("%d messages confirmed, want 30", ok)
	}
}
