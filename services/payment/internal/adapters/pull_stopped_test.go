package adapters_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
)

// TestPullStoppedByTheServerIsRestarted: a pull the client stops on its
// own (here the server deleted the durable consumer, which ends the pull
// with 409 Consumer Deleted) was never noticed: the replica stayed ready
// and charged nothing, without a word. The watch now logs it, counts it
// and restarts the pull, recreating the consumer, so an order published
// after the deletion is charged. Before, it never was.
func TestPullStoppedByTheServerIsRestarted(t *testing.T) {
	st := newStalled(t, "PAYPULLSTOP")
	close(st.prov.release) // a healthy provider: nothing stalls here
	stop, reader := st.startRecreating(t, adapters.Workers)
	defer stop(context.Background())

	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, 10*time.Second, "the first order to be charged", func() bool { return st.prov.Charges() == 1 })

	if err := st.s.JS.DeleteConsumer(context.Background(), st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 10*time.Second, "the stopped pull to be logged", func() bool {
		return st.logs.seen("order pull stopped on its own: restarting it")
	})
	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, 30*time.Second, "the order published after the deletion to be charged", func() bool {
		return st.prov.Charges() == 2
	})
	if !st.logs.seen("order pull restarted") {
		t.Error("the restart was not logged")
	}
	if got := adapters.CounterBy(t, reader, "shanhai.payment.consumer.pull_stops", "")[""]; got != 1 {
		t.Errorf("shanhai.payment.consumer.pull_stops = %d, want 1", got)
	}
}

// TestConsumerDeletedWhilePausedIsRecreated: a consumer deleted while the
// replica's pull is paused (its workers stuck) ends no pull of this
// replica, so nothing stops on its own; the pull resumed once the workers
// move is a new pull of a consumer that no longer exists, which the server
// answers No Responders once, then never. Before, that pull waited for
// ever: the replica stayed ready and charged nothing, without a word. The
// same window, narrower, is a deletion between the watch's look at the
// pull and its pause. Now such a pull counts as stopped: logged, counted,
// and restarted on the consumer created again.
func TestConsumerDeletedWhilePausedIsRecreated(t *testing.T) {
	st := newStalled(t, "PAYPAUSEDEL")
	released := false
	defer func() {
		if !released {
			close(st.prov.release)
		}
	}()
	stop, reader := st.startRecreating(t, 1)
	defer stop(context.Background())

	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, 20*time.Second, "the stuck replica to pause its pull", func() bool {
		return st.logs.seen("workers stuck: pull paused until a worker moves")
	})
	if err := st.s.JS.DeleteConsumer(context.Background(), st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	close(st.prov.release)
	released = true
	runtest.Eventually(t, 10*time.Second, "the pull to be resumed", func() bool {
		return st.logs.seen("workers moving again: pull resumed")
	})
	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, 60*time.Second, "the order published after the deletion to be charged", func() bool {
		return st.prov.Charges() == 2
	})
	if !st.logs.seen("order pull stopped on its own: restarting it") {
		t.Error("the pull without a consumer was not logged")
	}
	if got := adapters.CounterBy(t, reader, "shanhai.payment.consumer.pull_stops", "")[""]; got != 1 {
		t.Errorf("shanhai.payment.consumer.pull_stops = %d, want 1", got)
	}
}

// startRecreating starts st's replica with that many workers, creating its
// consumer again when it is gone (Recreates), and reads its counters.
func (st *stalled) startRecreating(t *testing.T, workers int) (stop func(context.Context), reader *sdkmetric.ManualReader) {
	t.Helper()
	reader = sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	c := adapters.NewOrderEvents(st.cons, st.names, st.app, stalledMaxDeliver, slog.New(st.logs)).Recreates(st.s.JS)
	stop, err := adapters.WithConsumerConfig(adapters.WithWorkers(c, workers), st.cfg).Start()
	if err != nil {
		t.Fatal(err)
	}
	return stop, reader
}
