package pulsarleg_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

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
	archiveFirstFive(t, e)
	m, reader := harness.Metrics(t)
	js := &failingCreate{JetStream: e.js}
	js.fail.Store(1)
	o := e.opts
	o.Metrics, o.JetStream = m, js
	e.leg = pulsarleg.New(o)
	stop := e.run(1)
	waitAcked(t, e, 1)
	stop()
	if js.fail.Load() != 0 {
		t.Fatal("the consumer's creation never failed")
	}
	wantTheRestOnce(t, e, reader)
}

// archiveFirstFive has a leg archive and ack offsets 0-4 and then publishes 5-9: a partition whose consumer has a
// floor past the stream's first message.
func archiveFirstFive(t *testing.T, e *env) {
	t.Helper()
	e.publishOffsets(t, 0, 4)
	stop := e.run(1)
	waitAcked(t, e, 1)
	stop()
	e.publishOffsets(t, 5, 9)
}

// wantTheRestOnce checks, after archiveFirstFive, that the archive holds offsets 0-9 once and that the run reader
// metered sent 5-9 and none of 0-4 again.
func wantTheRestOnce(t *testing.T, e *env, reader sdkmetric.Reader) {
	t.Helper()
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

// TestLegBRecreatesItsConsumerWhenStoppedAfterTheDelete: a stop (or a rebalance) that ended the session between the
// delete of its consumer and the creation at the ack floor made the creation fail on the ended context: the partition
// was left with no consumer, and the next owner, which has no floor of the failed session's (a restarted bridge,
// another instance), read the stream from its first message, sending offsets 0-4 to Pulsar again (5 "duplicate").
// The creation now outlives the stop: the next run resumes at offset 5.
func TestLegBRecreatesItsConsumerWhenStoppedAfterTheDelete(t *testing.T) {
	t.Parallel()
	e := setup(t)
	archiveFirstFive(t, e)
	js := &stopAfterDelete{JetStream: e.js, deleted: make(chan struct{})}
	o := e.opts
	o.JetStream = js
	e.leg = pulsarleg.New(o)
	stop := e.run(1)
	select {
	case <-js.deleted:
	case <-time.After(30 * time.Second):
		t.Fatal("the session never deleted its consumer")
	}
	stop() // ends the session's context while DeleteConsumer waits for it

	m, reader := harness.Metrics(t)
	o.Metrics, o.JetStream = m, e.js
	e.leg = pulsarleg.New(o)
	stop = e.run(1)
	waitAcked(t, e, 1)
	stop()
	wantTheRestOnce(t, e, reader)
}

// stopAfterDelete deletes the first session's consumer and returns only once that session's context (the one it
// looked the consumer up with) has ended: a stop that comes between the delete and the creation.
type stopAfterDelete struct {
	jetstream.JetStream
	looked  atomic.Bool
	session context.Context
	deleted chan struct{}
}

func (j *stopAfterDelete) Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	if !j.looked.Swap(true) {
		j.session = ctx
	}
	return j.JetStream.Consumer(ctx, stream, name)
}

func (j *stopAfterDelete) DeleteConsumer(ctx context.Context, stream, name string) error {
	err := j.JetStream.DeleteConsumer(ctx, stream, name)
	select {
	case <-j.deleted:
	default:
		close(j.deleted)
		<-j.session.Done()
	}
	return err
}
