package pulsarleg

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// slowConsumer answers Info as slowly as a struggling JetStream, counting the reads in flight.
type slowConsumer struct {
	jetstream.Consumer
	inFlight, most *atomic.Int64
}

func (c slowConsumer) Info(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	n := c.inFlight.Add(1)
	defer c.inFlight.Add(-1)
	for m := c.most.Load(); n > m && !c.most.CompareAndSwap(m, n); m = c.most.Load() {
	}
	select {
	case <-time.After(50 * time.Millisecond):
	case <-ctx.Done():
	}
	return &jetstream.ConsumerInfo{NumPending: 3}, nil
}

// TestTheLegsLagReadsAreBounded: with every partition's deliveries waiting (Pulsar away), each session reads its
// consumer every LagInterval for bridge_archive_lag; the leg has at most lagReadsMax reads in flight. Each session read
// on its own before, so the reads in flight grew with the partitions (here 32 at once) and as JetStream slowed down.
func TestTheLegsLagReadsAreBounded(t *testing.T) {
	m, err := metrics.New(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	l := New(Options{Metrics: m, LagInterval: 5 * time.Millisecond})
	var inFlight, most atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	const partitions = 32
	for i := range partitions {
		// Held: one message delivered and not acked, and no delivery since.
		s := &bsession{p: &partition{leg: l, route: mapping.Route{Topic: "t"}, id: i}, delivered: 1, deliveries: 1}
		done := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.watchLag(ctx, slowConsumer{inFlight: &inFlight, most: &most}, done)
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for most.Load() < lagReadsMax && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	// Some intervals more, for reads beyond the bound to start if they can.
	for range 20 {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if n := most.Load(); n != lagReadsMax {
		t.Errorf("%d consumer reads in flight at once for %d held partitions, want %d", n, partitions, lagReadsMax)
	}
}

// TestALagReadWaitsItsTurn: a held partition whose interval comes while the leg's lagReadsMax reads are in flight waits
// for the next free one. It skipped that interval before: reads of other partitions that end and start again between
// its ticks (their tickers all started with one rebalance, a slow JetStream) kept the bound taken each time it looked,
// so it never read and its bridge_archive_lag stayed flat at its last delivery's while the stream filled.
func TestALagReadWaitsItsTurn(t *testing.T) {
	m, err := metrics.New(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	const interval = 200 * time.Millisecond
	l := New(Options{Metrics: m, LagInterval: interval})
	for range lagReadsMax { // the other partitions' reads, in flight
		l.lagReads <- struct{}{}
	}
	var inFlight, reads atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	s := &bsession{p: &partition{leg: l, route: mapping.Route{Topic: "t"}}, delivered: 1, deliveries: 1}
	go s.watchLag(ctx, slowConsumer{inFlight: &inFlight, most: &reads}, done)
	defer func() { cancel(); <-done }()
	// Between the session's ticks one read ends and another starts: the bound is taken whenever the session looks.
	for i := 0; i < 10 && reads.Load() == 0; i++ {
		time.Sleep(interval + interval/2)
		<-l.lagReads
		select {
		case l.lagReads <- struct{}{}:
		case <-time.After(10 * time.Second):
			t.Fatal("the session's lag read kept its slot for 10s")
		}
	}
	if reads.Load() == 0 {
		t.Errorf("no lag read in 10 intervals for a held partition while other reads ended and started: starved")
	}
}
