package pulsarleg_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"

	"github.com/shanhai-dev/shanhai/bridge/internal/pulsarleg"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestLegBStopsWhenThePulsarProducerNeverCloses: after the drain, the session closes its producer, and the client's
// Close sends CLOSE_PRODUCER and waits for the answer up to its operation timeout (30 s by default). A broker that
// keeps the TCP connection open and never answers held the stop that long, past SHUTDOWN_TIMEOUT, so the bridge was
// SIGKILLed. The producer here archives (to the real Pulsar) and then never returns from Close, as against such a
// broker: the stop must end within the drain timeout.
func TestLegBStopsWhenThePulsarProducerNeverCloses(t *testing.T) {
	t.Parallel()
	e := setup(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	hung := func(p pulsar.Producer) pulsar.Producer { return &hungCloseProducer{Producer: p, release: release} }
	stop := e.archiveThree(t, hung, 2)
	if err := testenv.Within(t, 10*time.Second, "leg B's stop with a producer whose Close never returns", func() error { stop(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// hungCloseProducer sends through Pulsar, and its Close waits until release: a broker that never answers
// CLOSE_PRODUCER on a connection that stays open.
type hungCloseProducer struct {
	pulsar.Producer
	release chan struct{}
}

func (p *hungCloseProducer) Close() {
	<-p.release
	p.Producer.Close()
}

// TestLegBWaitsForAHealthyProducersCloseAfterAFullDrain: a drain that used its whole deadline (sends Pulsar did not
// answer in time) left the producer's Close no wait at all, so even a healthy broker's Close, milliseconds long, was
// abandoned and the broker held the producer's name past the stop, refusing the next owner's producer. The sends past
// the first three stall here, the Close is the real client's: the stop must return after it.
func TestLegBWaitsForAHealthyProducersCloseAfterAFullDrain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var made, closed atomic.Int64 // producers created, and whose Close returned
	stall := func(p pulsar.Producer) pulsar.Producer {
		made.Add(1)
		return &closeSeenProducer{Producer: &stallingProducer{Producer: p, pass: 3}, closed: &closed}
	}
	e.archiveThree(t, stall, 5)()
	if m, c := made.Load(), closed.Load(); c != m {
		t.Fatalf("leg B's stop returned with %d of its %d producers' Close not returned, which a healthy broker answers at once", m-c, m)
	}
}

// closeSeenProducer counts its producer's Close once it returned.
type closeSeenProducer struct {
	pulsar.Producer
	closed *atomic.Int64
}

func (p *closeSeenProducer) Close() {
	p.Producer.Close()
	p.closed.Add(1)
}

// archiveThree runs leg B, with a 500 ms drain, through producers wrap stands in for, on offsets 0 to last, and returns
// its stop once Pulsar holds the first three.
func (e *env) archiveThree(t *testing.T, wrap func(pulsar.Producer) pulsar.Producer, last int) (stop func()) {
	t.Helper()
	o := e.opts
	o.Pulsar, o.DrainTimeout = wrappingClient{Client: e.pulsar, wrap: wrap}, 500*time.Millisecond
	e.leg = pulsarleg.New(o)
	e.publishOffsets(t, 0, last)
	stop = e.run(1)
	if recs := e.read(t, 3, 10*time.Second); len(recs) != 3 {
		t.Fatalf("archived %d, want offsets 0-2", len(recs))
	}
	return stop
}
