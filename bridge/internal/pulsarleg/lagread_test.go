package pulsarleg_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBCountsAFailedReadOfItsConsumer: while Pulsar holds the sends, the session reads its consumer every lag
// interval for bridge_archive_lag. A failed read was logged at Debug only, so a gauge frozen because JetStream refused
// the reads looked like a lag that did not move. Each failure is now counted in bridge_archive_lag_read_errors_total.
func TestLegBCountsAFailedReadOfItsConsumer(t *testing.T) {
	t.Parallel()
	e := setup(t)
	m, reader := harness.Metrics(t)
	o := e.opts
	o.Metrics, o.LagInterval = m, 100*time.Millisecond
	o.Pulsar = stallingClient(e.pulsar, 0) // every send unanswered: the session waits and reads its consumer
	o.JetStream = infoFailingJetStream{JetStream: e.js}
	e.leg = pulsarleg.New(o)
	e.publishOffsets(t, 0, 2)
	stop := e.run(1)
	defer stop()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if n, _ := metricOf(t, reader, "bridge.archive.lag.read.errors", e.route.Topic); n >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("bridge_archive_lag_read_errors_total did not count the failed reads of the consumer")
		}
	}
}

var errInfoRefused = errors.New("consumer info refused (test)")

// infoFailingJetStream creates consumers whose Info always fails, as with JetStream answering 503 to info requests.
type infoFailingJetStream struct {
	jetstream.JetStream
}

func (j infoFailingJetStream) CreateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	c, err := j.JetStream.CreateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	return infoFailingConsumer{Consumer: c}, nil
}

type infoFailingConsumer struct {
	jetstream.Consumer
}

func (infoFailingConsumer) Info(context.Context) (*jetstream.ConsumerInfo, error) {
	return nil, errInfoRefused
}
