package pulsarleg_test

import (
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegBShowsWhenAPartitionLastArchived: bridge_archive_progress_timestamp_seconds is when leg B last acked one of a
// partition's messages (or took the partition); held at a dead letter the DLQ refuses it stays at the ack of offset 0
// while its archive lag grows, and the series goes when the leg stops. Without it one partition stalled beside others
// that archive raised no alert: BridgeArchiveStalled is per instance (its archive count), and the lag alone cannot
// tell a stalled partition from a busy one.
func TestLegBShowsWhenAPartitionLastArchived(t *testing.T) {
	t.Parallel()
	e := setup(t)
	m, reader := harness.Metrics(t)
	holdAtALetter(t, e, m, nil)
	before := time.Now().Unix()
	stop := e.run(1)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	// Offset 0 archived and acked, the partition held at the letter with it and offset 2 waiting.
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 2)
	held := time.Now().Unix()
	at, ok := metricOf(t, reader, "bridge.archive.progress.timestamp", e.route.Topic)
	if !ok || at < before || at > held {
		t.Fatalf("bridge_archive_progress_timestamp_seconds = %d (series there: %v), want between %d and %d", at, ok, before, held)
	}
	for o := int64(3); o < 8; o++ {
		e.publish(t, int(o), 0, o, kafkaleg.MsgID(e.route.Topic, 0, o))
	}
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 7)
	if now, _ := metricOf(t, reader, "bridge.archive.progress.timestamp", e.route.Topic); now != at {
		t.Errorf("bridge_archive_progress_timestamp_seconds moved from %d to %d while the partition archived nothing", at, now)
	}
	stop()
	stop = nil
	if v, ok := metricOf(t, reader, "bridge.archive.progress.timestamp", e.route.Topic); ok {
		t.Errorf("bridge_archive_progress_timestamp_seconds = %d after the leg stopped, want no series", v)
	}
}
