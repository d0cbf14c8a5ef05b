package stream

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
)

// fakeMsg counts InProgress calls; every call is reported on calls, and err
// is what InProgress answers.
type fakeMsg struct {
	jetstream.Msg // only InProgress and Subject are called
	n             atomic.Int32
	calls         chan int32
	err           error
	afterRelease  atomic.Bool
	t             *testing.T
}

func newFakeMsg(t *testing.T, err error) *fakeMsg {
	return &fakeMsg{calls: make(chan int32, 100), err: err, t: t}
}

func (f *fakeMsg) InProgress() error {
	if f.afterRelease.Load() {
		f.t.Error("InProgress after release returned")
	}
	n := f.n.Add(1)
	select {
	case f.calls <- n:
	default:
	}
	return f.err
}

func (f *fakeMsg) Subject() string { return "s" }

func (f *fakeMsg) waitCalls(t *testing.T, n int32) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case got := <-f.calls:
			if got >= n {
				return
			}
		case <-deadline:
			t.Fatalf("%d InProgress calls, want %d", f.n.Load(), n)
		}
	}
}

func TestFirstAckWaitIsTheFirstBackOffStep(t *testing.T) {
	for _, tc := range []struct {
		cfg  jetstream.ConsumerConfig
		want time.Duration
	}{
		{jetstream.ConsumerConfig{AckWait: 30 * time.Second, BackOff: []time.Duration{time.Second, 5 * time.Second}}, time.Second},
		{jetstream.ConsumerConfig{AckWait: 10 * time.Second}, 10 * time.Second},
		{jetstream.ConsumerConfig{}, 30 * time.Second},
	} {
		if got := FirstAckWait(tc.cfg); got != tc.want {
			t.Errorf("FirstAckWait(%+v) = %v, want %v", tc.cfg, got, tc.want)
		}
	}
}

// testKeeper is the Keeper of a consumer whose first ack wait is ackWait
// and whose AckWait is atMost.
func testKeeper(ackWait, atMost time.Duration, log *slog.Logger) *Keeper {
	return NewKeeper(jetstream.ConsumerConfig{AckWait: atMost, BackOff: []time.Duration{ackWait}}, log)
}

func TestKeeperSendsNothingForAFastHandler(t *testing.T) {
	m := newFakeMsg(t, nil)
	release := testKeeper(time.Hour, time.Hour, nil).Hold(m)
	release()
	m.afterRelease.Store(true)
	if n := m.n.Load(); n != 0 {
		t.Fatalf("%d InProgress calls for a handler done before the first tick", n)
	}
}

func TestKeeperTicksUntilReleased(t *testing.T) {
	m := newFakeMsg(t, nil)
	release := testKeeper(2*time.Millisecond, time.Hour, nil).Hold(m)
	m.waitCalls(t, 3)
	release()
	m.afterRelease.Store(true)
	// Release holds the tick's lock, so a tick running when it was called is
	// done before it returns and none starts later: a late call fails the
	// test in InProgress. Waiting many intervals gives a stray one time to come.
	time.Sleep(50 * time.Millisecond)
}

func TestKeeperKeepsTickingThroughErrors(t *testing.T) {
	m := newFakeMsg(t, errors.New("nats: connection closed"))
	release := testKeeper(2*time.Millisecond, time.Hour, nil).Hold(m)
	m.waitCalls(t, 3)
	release()
}

func TestKeeperStopsOnceTheMessageIsSettled(t *testing.T) {
	m := newFakeMsg(t, jetstream.ErrMsgAlreadyAckd)
	release := testKeeper(2*time.Millisecond, time.Hour, nil).Hold(m)
	m.waitCalls(t, 1)
	// No release call: the chain ended on its own, so no later call may come.
	m.afterRelease.Store(true)
	time.Sleep(50 * time.Millisecond)
	release()
}

// TestKeeperGivesUpOnAStuckHandler: past atMost the ticks stop with a
// warning, so the server's back-off hands the message to another worker.
func TestKeeperGivesUpOnAStuckHandler(t *testing.T) {
	m := newFakeMsg(t, nil)
	logs := make(chan slog.Record, 1)
	release := testKeeper(2*time.Millisecond, 10*time.Millisecond, slog.New(recordHandler(logs))).Hold(m)
	defer release()
	select {
	case r := <-logs:
		if r.Level != slog.LevelWarn {
			t.Fatalf("gave up with a %v record %q, want a warning", r.Level, r.Message)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still keeping the message alive past atMost, %d InProgress calls", m.n.Load())
	}
	// The chain ended with the warning: a later call fails the test in InProgress.
	m.afterRelease.Store(true)
	time.Sleep(50 * time.Millisecond)
}

// recordHandler sends every record logged at Info or above to its channel.
type recordHandler chan<- slog.Record

func (h recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h <- r
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// The tests below run against the real NATS server with the order and payment
// services' consumer settings: AckWait 30 s but BackOff 1 s, 5 s, 30 s, so the
// first ack wait is 1 s. The handler takes 2.5 s, longer than the first
// step and shorter than the first two together.
var serviceBackOff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second}

const slowHandler = 2500 * time.Millisecond

// TestSlowHandlerNotHeldIsRedelivered is the defect Keeper
// fixes, and shows the server behaves as the other tests assume.
func TestSlowHandlerNotHeldIsRedelivered(t *testing.T) {
	cons, msgs := slowConsumer(t, "NOKEEP")
	m := next(t, msgs)
	time.Sleep(slowHandler)
	if n := svctest.Delivered(t, cons); n < 2 {
		t.Fatalf("%d deliveries while a handler worked %v with a first ack wait of 1 s; the server no longer redelivers, revisit Keeper's premise", n, slowHandler)
	}
	settle(t, m)
}

func TestSlowHandlerHeldIsDeliveredOnce(t *testing.T) {
	cons, msgs := slowConsumer(t, "KEEP")
	m := next(t, msgs)
	release := NewKeeper(jetstream.ConsumerConfig{AckWait: time.Minute, BackOff: serviceBackOff}, nil).Hold(m)
	time.Sleep(slowHandler)
	settle(t, m)
	release()
	if n := svctest.Delivered(t, cons); n != 1 {
		t.Fatalf("%d deliveries of a message kept alive while its handler worked %v, want 1", n, slowHandler)
	}
}

// TestHeldMessageReleasedUnsettledIsRedelivered is a worker that crashed
// mid-handling: its keep-alive stops with it and the message is not settled,
// so the server must deliver it again after the first back-off step.
func TestHeldMessageReleasedUnsettledIsRedelivered(t *testing.T) {
	cons, msgs := slowConsumer(t, "CRASH")
	m := next(t, msgs)
	release := NewKeeper(jetstream.ConsumerConfig{AckWait: time.Minute, BackOff: serviceBackOff}, nil).Hold(m)
	time.Sleep(slowHandler)
	release()
	if n := svctest.Delivered(t, cons); n != 1 {
		t.Fatalf("%d deliveries while kept alive, want 1", n)
	}
	again := next(t, msgs)
	md, err := again.Metadata()
	if err != nil {
		t.Fatal(err)
	}
	if md.NumDelivered != 2 {
		t.Fatalf("redelivered with NumDelivered %d, want 2", md.NumDelivered)
	}
	settle(t, again)
}

// slowConsumer publishes one message to a private stream and consumes it
// with the services' settings, handing every delivery to the test on the
// returned channel, as the services' pools take messages off Consume.
func slowConsumer(t *testing.T, prefix string) (jetstream.Consumer, <-chan jetstream.Msg) {
	t.Helper()
	js, n := testStream(t, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subject := n.StreamSubjects[:len(n.StreamSubjects)-1] + "x"
	cons, err := EnsureConsumer(ctx, js, n, jetstream.ConsumerConfig{
		Durable: "slow", FilterSubject: subject, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 20, BackOff: serviceBackOff, MaxAckPending: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, subject, []byte("work")); err != nil {
		t.Fatal(err)
	}
	msgs := make(chan jetstream.Msg, 16)
	cc, err := cons.Consume(func(m jetstream.Msg) { msgs <- m })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return cons, msgs
}

// next is the consumer's next delivery; the wait is far longer than the
// back-off step that brings a redelivery.
func next(t *testing.T, msgs <-chan jetstream.Msg) jetstream.Msg {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
		return nil
	}
}

// settle acks m and waits for the server's answer, so what the test reads
// next from the server comes after the ack.
func settle(t *testing.T, m jetstream.Msg) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
}
