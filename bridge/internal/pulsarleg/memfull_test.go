package pulsarleg_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestLegBStopsWhileThePulsarClientsMemoryIsFull: the Pulsar client holds the payloads it has not had confirmed within
// one memory limit for all its producers (ClientOptions.MemoryLimitBytes, 64 MiB by default: nine partitions of 512
// records of 16 KiB fill it), and SendAsync waits for room under it until the context it was given ends. Leg B gave
// it context.Background(): with Pulsar away and the limit full, a stop or a rebalance waited inside SendAsync until
// Pulsar came back, holding the partition and with it the instance's consumer-group generation. The producer here
// passes three sends and holds their answers (a broker away), then blocks the fourth as the client's reserveMem does
// (pulsar-client-go v0.19.0 producer_partition.go). The stop must end within the drain timeout, not wait for
// Pulsar; nothing is lost: the next run archives all ten once.
func TestLegBStopsWhileThePulsarClientsMemoryIsFull(t *testing.T) {
	t.Parallel()
	e := setup(t)
	m, reader := harness.Metrics(t)
	full := &memFullClient{Client: e.pulsar, pass: 3, blocked: make(chan struct{})}
	o := e.opts
	o.Metrics, o.Pulsar, o.DrainTimeout = m, full, 500*time.Millisecond
	e.leg = pulsarleg.New(o)
	e.publishOffsets(t, 0, 9)
	stop := e.run(1)
	select {
	case <-full.blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("leg B never sent past the three sends the client had room for")
	}
	if err := testenv.Within(t, 20*time.Second, "leg B's stop with the client's memory full", func() error { stop(); return nil }); err != nil {
		t.Fatal(err)
	}
	if n, _, err := harness.Int64Metric(reader, "bridge.inflight", "leg", metrics.LegB); err != nil || n != 0 {
		t.Fatalf("bridge_inflight{leg=nats-pulsar} = %d (%v) after the stop, want 0", n, err)
	}
	o.Pulsar = e.pulsar
	e.leg = pulsarleg.New(o)
	stop = e.run(1)
	defer stop()
	if recs := e.read(t, 11, 5*time.Second); len(recs) != 10 {
		t.Fatalf("archived %d, want offsets 0-9 once", len(recs))
	}
}

// memFullClient's producers send the first pass messages to Pulsar and hold their answers until Close (which fails
// them, as the real client's Close does); the next send waits until its context ends and then fails with
// pulsar.ErrContextExpired, as the client's send does while its memory limit is full.
type memFullClient struct {
	pulsar.Client
	pass    int
	blocked chan struct{} // closed when a send first waits
	once    sync.Once
}

func (c *memFullClient) CreateProducer(o pulsar.ProducerOptions) (pulsar.Producer, error) {
	p, err := c.Client.CreateProducer(o)
	if err != nil {
		return nil, err
	}
	return &memFullProducer{stallingProducer: stallingProducer{Producer: p, pass: c.pass}, client: c}, nil
}

type memFullProducer struct {
	stallingProducer
	client *memFullClient
}

func (p *memFullProducer) SendAsync(ctx context.Context, m *pulsar.ProducerMessage, cb func(pulsar.MessageID, *pulsar.ProducerMessage, error)) {
	p.mu.Lock()
	p.n++
	n := p.n
	if n <= p.pass {
		p.held = append(p.held, func() { cb(nil, m, pulsar.ErrProducerClosed) })
	}
	p.mu.Unlock()
	if n <= p.pass {
		return // sent to a broker that does not answer
	}
	p.client.once.Do(func() { close(p.client.blocked) })
	<-ctx.Done()
	cb(nil, m, pulsar.ErrContextExpired)
}
