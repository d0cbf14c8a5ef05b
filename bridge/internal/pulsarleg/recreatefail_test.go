package pulsarleg_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBKeepsItsPositionWhenCreatingItsConsumerAgainFails: each session deletes the partition's durable consumer and
// creates it again at its ack floor. When the creation failed (NATS going away between the two requests, JetStream
// answering 503 while it recovers) the next session found no consumer and read the stream from its first message:
// offsets 0-4, archived and acked before, were all sent to Pulsar again (dropped by its dedup, 5 "duplicate"); on a
// production stream that is up to its MaxAge of replays ahead of the new messages. The next session now creates it at
// the position the failed one had read, as long as the stream is the same (not deleted and created again meanwhile).
func TestLegBKeepsItsPositionWhenCreatingItsConsumerAgainFails(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.publishOffsets(t, 0, 4)
	stop := e.run(1)
	waitAcked(t, e, 1)
	stop()

	e.publishOffsets(t, 5, 9)
	m, reader := harness.Metrics(t)
	js := &failingCreate{JetStream: e.js}
	js.fail.Store(1)
	o := e.opts
	o.Metrics, o.JetStream = m, js
	e.leg = pulsarleg.New(o)
	stop = e.run(1)
	waitAcked(t, e, 1)
	stop()
	if js.fail.Load() != 0 {
		t.Fatal("the consumer's creation never failed")
	}
	if recs := e.read(t, 11, 5*time.Second); len(recs) != 10 {
		t.Fatalf("archived %d, want offsets 0-9 once", len(recs))
	}
	wantResults(t, reader, map[string]int64{"ok": 5, "duplicate": 0})
}

// failingCreate fails the next fail consumer creations, after the request would have been sent.
type failingCreate struct {
	jetstream.JetStream
	fail atomic.Int32
}

func (j *failingCreate) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	if j.fail.Add(-1) >= 0 {
		return nil, errors.New("jetstream unavailable (test)")
	}
	j.fail.Store(0)
	return j.JetStream.CreateConsumer(ctx, stream, cfg)
}
