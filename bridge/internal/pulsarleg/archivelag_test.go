package pulsarleg_test

import (
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBShowsItsArchiveLagWhileHeld: a partition whose deliveries wait (here at a dead letter the DLQ refuses; Pulsar
// away holds it the same way) shows in bridge_archive_lag what JetStream holds and Pulsar has not confirmed, the
// messages stored after it stopped included, and the series goes when the leg stops. Leg B had no lag: while its sink
// was away, nothing said how far the archive was behind.
func TestLegBShowsItsArchiveLagWhileHeld(t *testing.T) {
	t.Parallel()
	e := setup(t)
	m, reader := harness.Metrics(t)
	holdAtALetter(t, e, m, func(o *pulsarleg.Options) { o.LagInterval = 100 * time.Millisecond })
	stop := e.run(1)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	// Held at the letter: it and the message after it; offset 0 is archived and acked.
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 2)
	// Stored while the partition waits: no delivery brings them, the consumer's count does.
	for o := int64(3); o < 8; o++ {
		e.publish(t, int(o), 0, o, kafkaleg.MsgID(e.route.Topic, 0, o))
	}
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 7)
	stop()
	stop = nil
	if v, ok := metricOf(t, reader, "bridge.archive.lag", e.route.Topic); ok {
		t.Errorf("bridge_archive_lag = %d after the leg stopped, want no series", v)
	}
}

// metricOf is the value of leg B's gauge name for topic, and whether it has a series.
func metricOf(t *testing.T, r sdkmetric.Reader, name, topic string) (int64, bool) {
	t.Helper()
	v, ok, err := harness.Int64Metric(r, name, "topic", topic)
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

// waitMetric waits up to 30 s for leg B's gauge name of topic to be want.
func waitMetric(t *testing.T, r sdkmetric.Reader, name, topic string, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, ok := metricOf(t, r, name, topic)
		if ok && v == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d (series there: %v), want %d", name, v, ok, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
