package pulsarleg_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
)

// TestLegBArchiveLagKeepsUpWithASlowPulsar: Pulsar confirms one send at a time while JetStream fills. The archive lag
// from a delivery or an ack counts only what JetStream held when it sent the message delivered last, and the pull
// buffers messages sent long before a slow Pulsar lets them through: each ack set the gauge back to that (here 79 of
// 179), below the consumer's own count read while the sends waited, until the next read. A reading of the consumer
// now holds, less what was acked since, until a delivery counts more.
func TestLegBArchiveLagKeepsUpWithASlowPulsar(t *testing.T) {
	t.Parallel()
	e, reader, paced := pacedLeg(t, time.Second)
	// 80 messages: 32 sent to Pulsar (the test leg's in-flight), the others in JetStream or the pull's buffer.
	for i := range 80 {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
	stop := e.run(1)
	defer stop()
	defer close(paced.release)
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 80)
	for i := 80; i < 180; i++ {
		e.publish(t, i, 0, int64(i), kafkaleg.MsgID(e.route.Topic, 0, int64(i)))
	}
	waitMetric(t, reader, "bridge.archive.lag", e.route.Topic, 180) // read from the consumer while the sends wait

	paced.release <- struct{}{} // Pulsar confirms offset 0: leg B acks it and takes one more message
	c, err := e.js.Consumer(context.Background(), e.stream, mapping.Name(e.route.Topic, 0))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		info, err := c.Info(context.Background())
		if err == nil && info.AckFloor.Consumer >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("offset 0 not acked: %v %v", info, err)
		}
	}
	for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if v, _ := metricOf(t, reader, "bridge.archive.lag", e.route.Topic); v < 170 {
			t.Fatalf("bridge_archive_lag = %d after one ack with 179 messages unarchived", v)
		}
	}
}

// pacedLeg is setup's env with a leg whose Pulsar confirms at the test's pace (pacedClient), reading its consumer
// every lagInterval while deliveries wait, and the reader of its metrics.
func pacedLeg(t *testing.T, lagInterval time.Duration) (*env, sdkmetric.Reader, *pacedClient) {
	t.Helper()
	e := setup(t)
	m, reader := harness.Metrics(t)
	paced := &pacedClient{Client: e.pulsar, release: make(chan struct{}, 1)}
	o := e.opts
	o.Pulsar, o.Metrics, o.LagInterval = paced, m, lagInterval
	e.leg = pulsarleg.New(o)
	return e, reader, paced
}

// pacedClient is a Pulsar client whose producers send at once but report each send's outcome, in order, only when
// the test puts a token in release (or closes it).
type pacedClient struct {
	pulsar.Client
	release chan struct{}
}

func (g *pacedClient) CreateProducer(o pulsar.ProducerOptions) (pulsar.Producer, error) {
	p, err := g.Client.CreateProducer(o)
	if err != nil {
		return nil, err
	}
	gp := &pacedProducer{Producer: p, release: g.release, outcomes: make(chan func(), 1024)}
	go gp.deliver()
	return gp, nil
}

type pacedProducer struct {
	pulsar.Producer
	release  chan struct{}
	outcomes chan func()
	once     sync.Once
}

func (p *pacedProducer) SendAsync(ctx context.Context, m *pulsar.ProducerMessage, cb func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	done := make(chan func(), 1)
	p.outcomes <- func() { (<-done)() }
	p.Producer.SendAsync(ctx, m, func(id pulsar.MessageID, pm *pulsar.ProducerMessage, err error) {
		done <- func() { cb(id, pm, err) }
	})
}

// deliver reports the outcomes in send order, one per token.
func (p *pacedProducer) deliver() {
	for f := range p.outcomes {
		<-p.release
		f()
	}
}

func (p *pacedProducer) Close() {
	p.once.Do(func() { close(p.outcomes) })
	p.Producer.Close()
}
