package pulsarleg_test

import (
	"testing"
	"time"

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
	lag := func() (int64, bool) {
		t.Helper()
		v, ok, err := harness.Int64Metric(reader, "bridge.archive.lag", "topic", e.route.Topic)
		if err != nil {
			t.Fatal(err)
		}
		return v, ok
	}
	// Held at the letter: it and the message after it; offset 0 is archived and acked.
	waitLag := func(want int64) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			v, ok := lag()
			if ok && v == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("bridge_archive_lag = %d (series there: %v), want %d", v, ok, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLag(2)
	// Stored while the partition waits: no delivery brings them, the consumer's count does.
	for o := int64(3); o < 8; o++ {
		e.publish(t, int(o), 0, o, kafkaleg.MsgID(e.route.Topic, 0, o))
	}
	waitLag(7)
	stop()
	stop = nil
	if v, ok := lag(); ok {
		t.Errorf("bridge_archive_lag = %d after the leg stopped, want no series", v)
	}
}
