package adapters_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/shanhai-dev/shanhai/pkg/stream"
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
	st.pullStoppedLogged(t)
	st.chargedAfterRestart(t, reader, 30*time.Second)
	if !st.logs.seen("order pull restarted") {
		t.Error("the restart was not logged")
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
	st.chargedAfterRestart(t, reader, 60*time.Second)
}

// TestPullRefusedByTheServerIsRepaired: an operator lowered the consumer's
// MaxRequestBatch below the client's batch, keeping its config digest (so
// EnsureConsumer leaves it). The server refuses every pull with 409
// Exceeded MaxRequestBatch, which the client reports, asking again only
// every 30 s (missed heartbeats) and refused each time, its pull not ended. Before, the error was stored and never
// acted on: the replica stayed ready and an order published after it was
// never charged. Now the pull counts as stopped on the first refusal: the
// consumer's config is put back and a new pull started. The refusal comes
// when the pull's request on the server expires (the client's 30 s).
func TestPullRefusedByTheServerIsRepaired(t *testing.T) {
	st := newStalled(t, "PAYPULLREFUSE")
	close(st.prov.release)
	stop, reader := st.startRecreating(t, adapters.Workers)
	defer stop(context.Background())
	ctx := context.Background()

	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, 10*time.Second, "the first order to be charged", func() bool { return st.prov.Charges() == 1 })
	info, err := st.cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lowered := info.Config
	lowered.MaxRequestBatch = 10
	if _, err := st.s.JS.UpdateConsumer(ctx, st.s.Name, lowered); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 60*time.Second, "the refused pull to be logged", func() bool {
		return st.logs.seen(pullStopped)
	})
	if got := st.logs.errOf(pullStopped); !strings.Contains(got, "Exceeded MaxRequestBatch") {
		t.Errorf("the stopped pull was logged with err %q, want the refusal", got)
	}
	st.chargedAfterRestart(t, reader, 30*time.Second)
	info, err = st.cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxRequestBatch != 0 {
		t.Errorf("MaxRequestBatch = %d on the server after the repair, want the service's 0", info.Config.MaxRequestBatch)
	}
}

// TestRecreatedConsumerStartsAboveTheAckFloor: a consumer recreated after
// its deletion replayed the whole stream (DeliverAll): every order already
// charged was delivered again, and new orders waited behind all of them.
// Now it starts just above the ack floor the replica last saw, so here,
// with every earlier order acked and seen so, the recreated consumer
// delivers the new order alone; and the next EnsureConsumer (a start,
// another replica) takes it as made from the service's config and leaves
// its start, which one with a changed config (a deploy) keeps too.
func TestRecreatedConsumerStartsAboveTheAckFloor(t *testing.T) {
	st := newStalled(t, "PAYPULLFLOOR")
	close(st.prov.release)
	stop, reader := st.startRecreating(t, 1)
	defer stop(context.Background())
	ctx := context.Background()

	const before = 5
	st.chargedAndSeen(t, before)
	if err := st.s.JS.DeleteConsumer(ctx, st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	st.pullStoppedLogged(t)
	st.chargedAfterRestart(t, reader, 30*time.Second)

	cons, err := st.s.JS.Consumer(ctx, st.s.Name, st.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info := cons.CachedInfo()
	if info.Delivered.Consumer != 1 {
		t.Errorf("the recreated consumer made %d deliveries, want 1 (the new order): it started at stream sequence %d", info.Delivered.Consumer, info.Config.OptStartSeq)
	}
	if dup := adapters.CounterBy(t, reader, "shanhai.payment.order_events", "outcome")["duplicate"]; dup != 0 {
		t.Errorf("%d orders charged before the deletion were delivered again", dup)
	}
	again, err := stream.EnsureConsumer(ctx, st.s.JS, st.names, st.cfg)
	if err != nil {
		t.Fatalf("EnsureConsumer on the recreated consumer: %v", err)
	}
	if got := again.CachedInfo().Config.OptStartSeq; got != before+1 {
		t.Errorf("after EnsureConsumer the consumer starts at %d, want %d", got, before+1)
	}
	// A deploy with a changed config: its start refused to update the
	// recreated consumer's deliver policy, and failed.
	changed := st.cfg
	changed.MaxDeliver++
	if _, err := stream.EnsureConsumer(ctx, st.s.JS, st.names, changed); err != nil {
		t.Errorf("EnsureConsumer with a changed config on the recreated consumer: %v", err)
	}
}

// TestRecreatedStreamIsReadFromItsStart: a stream deleted and created
// again under its name numbers its messages from 1 again, so the ack floor
// seen on the old one says nothing of them. A consumer recreated above it
// skipped them: here the one order of the new stream (sequence 1, the old
// floor 3) was never delivered. The replica's lookups are held until the
// stream exists again, as when the stream is recreated before the replica
// sees its pull stopped.
func TestRecreatedStreamIsReadFromItsStart(t *testing.T) {
	st := newStalled(t, "PAYSTREAMAGAIN")
	close(st.prov.release)
	gated, stop, reader := st.startGated(t)
	defer stop(context.Background())
	ctx := context.Background()

	st.chargedAndSeen(t, 3)
	str, err := st.s.JS.Stream(ctx, st.s.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.s.JS.DeleteStream(ctx, st.s.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := st.s.JS.CreateStream(ctx, str.CachedInfo().Config); err != nil {
		t.Fatal(err)
	}
	st.pullStoppedLogged(t)
	close(gated.open)
	st.chargedAfterRestart(t, reader, 30*time.Second)
}

// chargedAndSeen publishes n orders to st's replica (startRecreating) and
// waits until they are charged and the replica has seen them all acked.
func (st *stalled) chargedAndSeen(t *testing.T, n int) {
	t.Helper()
	for range n {
		publishOrder(t, st.s, st.names.Subject)
	}
	runtest.Eventually(t, 10*time.Second, "the earlier orders to be charged and seen acked", func() bool {
		return st.prov.Charges() == n && adapters.AckFloorSeen(st.events) == uint64(n)
	})
}

// startGated starts st's replica with one worker as startRecreating does,
// its consumer lookups held until gated.open is closed.
func (st *stalled) startGated(t *testing.T) (gated gatedJS, stop func(context.Context), reader *sdkmetric.ManualReader) {
	t.Helper()
	gated = gatedJS{JetStream: st.s.JS, open: make(chan struct{})}
	stop, reader = st.startRecreatingWith(t, 1, gated)
	return gated, stop, reader
}

// gatedJS holds the replica's consumer lookups until open is closed.
type gatedJS struct {
	jetstream.JetStream
	open chan struct{}
}

func (g gatedJS) Consumer(ctx context.Context, stream, name string) (jetstream.Consumer, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.JetStream.Consumer(ctx, stream, name)
}

const pullStopped = "order pull stopped on its own: restarting it"

// pullStoppedLogged waits until st's replica has logged its pull stopped.
func (st *stalled) pullStoppedLogged(t *testing.T) {
	t.Helper()
	runtest.Eventually(t, 10*time.Second, "the stopped pull to be logged", func() bool {
		return st.logs.seen(pullStopped)
	})
}

// chargedAfterRestart publishes an order once a pull stopped on its own
// and waits until it is charged, the one before it too, and the stop
// counted once.
func (st *stalled) chargedAfterRestart(t *testing.T, reader *sdkmetric.ManualReader, within time.Duration) {
	t.Helper()
	want := st.prov.Charges() + 1
	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, within, "the order published after the pull stopped to be charged", func() bool {
		return st.prov.Charges() == want
	})
	if !st.logs.seen(pullStopped) {
		t.Error("the stopped pull was not logged")
	}
	if got := adapters.CounterBy(t, reader, "shanhai.payment.consumer.pull_stops", "")[""]; got != 1 {
		t.Errorf("shanhai.payment.consumer.pull_stops = %d, want 1", got)
	}
}

// startRecreating starts st's replica (events) with that many workers,
// creating its consumer again when it is gone (Recreates), and reads its
// counters.
func (st *stalled) startRecreating(t *testing.T, workers int) (stop func(context.Context), reader *sdkmetric.ManualReader) {
	t.Helper()
	return st.startRecreatingWith(t, workers, st.s.JS)
}

// startRecreatingWith is startRecreating through js.
func (st *stalled) startRecreatingWith(t *testing.T, workers int, js jetstream.JetStream) (stop func(context.Context), reader *sdkmetric.ManualReader) {
	t.Helper()
	reader = sdkmetric.NewManualReader()
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	st.events = adapters.NewOrderEvents(st.cons, st.names, st.app, st.maxDeliver, slog.New(st.logs)).Recreates(js)
	return st.startOn(t, st.events, workers), reader
}
