package pulsarleg_test

import (
	"context"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegBArchiveLagFallsWhenTheStreamDropsWhatWaits: messages leg B has not been sent yet leave the stream unarchived
// (a purge here; MaxAge in production) while Pulsar is slow. Once Pulsar confirms what leg B pulled there is nothing
// left to deliver, and the last delivery's count (what JetStream held when it sent that message) is stale: the
// consumer's reading, taken after it, is what the gauge must show. Kept only as a floor under the delivery's count,
// the reading was ignored and the gauge stayed at the removed messages for good, above the true lag of 0, firing the
// archive stall alerts.
func TestLegBArchiveLagFallsWhenTheStreamDropsWhatWaits(t *testing.T) {
	t.Parallel()
	e, reader, paced := pacedLeg(t, 200*time.Millisecond)
	// 120 messages: more than leg B's in-flight and its pull's buffer hold, so some wait in the stream unsent.
	for i := range 120 {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
	stop := e.run(1)
	defer stop()
	released := false
	defer func() {
		if !released {
			close(paced.release)
		}
	}()
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 120)

	st, err := e.js.Stream(context.Background(), e.stream)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(paced.release) // Pulsar confirms every send: leg B acks what it pulled, and the stream has nothing more
	released = true
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 0)
}
