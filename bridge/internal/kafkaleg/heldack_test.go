package kafkaleg_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
)

// TestLegACommitsNothingPastAnUnconfirmedOffset: JetStream stores every record, but the confirmation of offset 3 is
// held back (a slow or lost ack); the records after it are confirmed. The group's committed offset stays at 3 (a
// crash now must read 3 again, as nothing says JetStream has it) through several commit intervals, and reaches the end
// once the confirmation comes. The stream holds each record once.
func TestLegACommitsNothingPastAnUnconfirmedOffset(t *testing.T) {
	t.Parallel()
	e := setup(t, 1)
	const n = 10
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, harness.Event(i, 1, 50))
	}
	produce(t, e, msgs)
	held := &heldConfirmation{JetStream: e.js, offset: "3", release: make(chan struct{})}
	e.js = held
	group := "bridgetest-" + harness.ID()
	stop := start(e.leg(t, group, 1<<20))
	defer stop()

	waitStream(t, e, n)
	for deadline := time.Now().Add(30 * time.Second); committed(t, e, group, 1)[0] != 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("group committed %v, want 3 (offsets 0 to 2 confirmed)", committed(t, e, group, 1))
		}
	}
	// Five commit intervals of the test leg (200 ms) with 4 to 9 stored and 3 unconfirmed: no commit may pass 3.
	for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if c := committed(t, e, group, 1)[0]; c != 3 {
			t.Fatalf("group committed %d while offset 3 waits for its JetStream confirmation", c)
		}
	}
	close(held.release)
	waitCommittedEnds(t, e, group, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if info, err := e.stream.Info(ctx); err != nil || info.State.Msgs != n {
		t.Fatalf("stream info %v (%v), want %d messages", info, err, n)
	}
}

// heldConfirmation is a JetStream that passes every publish through but holds back the outcome of the first publish
// of offset until release is closed.
type heldConfirmation struct {
	jetstream.JetStream
	offset  string
	release chan struct{}
	held    bool // only the feed publishes, from one goroutine per partition
}

func (j *heldConfirmation) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	inner, err := j.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || j.held || m.Header.Get(kafkaleg.HeaderOffset) != j.offset {
		return inner, err
	}
	j.held = true
	f := &lateRefusal{PubAckFuture: inner, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	go func() {
		<-j.release
		select {
		case a := <-inner.Ok():
			f.ok <- a
		case err := <-inner.Err():
			f.err <- err
		}
	}()
	return f, nil
}
