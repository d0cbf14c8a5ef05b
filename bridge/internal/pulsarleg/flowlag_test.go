package pulsarleg_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
)

// TestLegBArchiveLagKeepsUpWhileMessagesComeFasterThanPulsarConfirms: Pulsar confirms one message a step, faster
// than the leg's lag interval, and each step ten more arrive. Every tick of the interval saw a delivery, so the
// consumer was never read, and the gauge counted what JetStream had not delivered yet when it sent the message
// delivered last; the pull buffers (up to the in-flight bound of 32) while Pulsar is the bottleneck, so that count was
// a buffer's worth of steps old: the gauge trailed by about 32 steps of arrivals (~300 of ~700). The consumer is now
// read each interval while the sends fill the in-flight bound, so the gauge trails by at most the arrivals of one
// interval. A step needs an ack, which the leg sends on its AckInterval ticks, so an interval holds at most
// interval/AckInterval steps (6 here, as many as an idle machine runs): the bound is those and two more, for a
// delayed tick and the reading's own time, not a guess at this machine's speed (50, the bound before, is 5 steps).
func TestLegBArchiveLagKeepsUpWhileMessagesComeFasterThanPulsarConfirms(t *testing.T) {
	t.Parallel()
	const interval = 300 * time.Millisecond
	e, reader, paced := pacedLeg(t, interval)
	behind := 10 * (int64(interval/e.opts.AckInterval) + 2)
	e.publishOffsets(t, 0, 79) // 32 sent to Pulsar (the test leg's in-flight), the rest in JetStream or the pull's buffer
	stop := e.run(1)
	defer stop()
	defer close(paced.release)
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 80)
	c, err := e.js.Consumer(context.Background(), e.stream, mapping.Name(e.route.Topic, 0))
	if err != nil {
		t.Fatal(err)
	}
	var info *jetstream.ConsumerInfo
	for step := 1; step <= 64; step++ {
		e.publishOffsets(t, 70+10*step, 79+10*step)
		paced.release <- struct{}{} // Pulsar confirms one more: leg B acks it and takes one more message
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			info, err = c.Info(context.Background())
			if err == nil && info.AckFloor.Consumer >= uint64(step) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("step %d not acked: %v %v", step, info, err)
			}
		}
	}
	// Nothing arrives nor is acked until the next release: the consumer's count is what the gauge should show.
	want := int64(info.NumPending) + int64(info.NumAckPending)
	if v, _ := metricOf(t, reader, "bridge.archive.lag", e.route.Topic); want-v > behind {
		t.Fatalf("bridge_archive_lag = %d with %d messages unarchived, want at most %d fewer", v, want, behind)
	}
}
