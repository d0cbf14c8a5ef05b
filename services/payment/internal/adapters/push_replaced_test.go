package adapters_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
)

// TestPushConsumerNobodyReadsIsReplaced: an operator deleted the durable
// and created it again push based, with the service's config digest and
// a start above what was acked. The server updates neither kind into the
// other, and the client takes no pull consumer of it (not a pull
// consumer), so every restart failed, logged at ERROR, and an order
// published after it was never charged. With no subscriber bound, the
// replica now replaces it by its pull consumer, starting just above the
// push consumer's ack floor: the new order is its one delivery.
func TestPushConsumerNobodyReadsIsReplaced(t *testing.T) {
	st := newStalled(t, "PAYPUSHBACK")
	close(st.prov.release)
	gated, stop, reader := st.startGated(t)
	defer stop(context.Background())
	ctx := context.Background()

	const before = 3
	st.chargedAndSeen(t, before)
	st.makePush(t, "paypushback.nobody", before+1)
	st.pullStoppedLogged(t)
	close(gated.open)
	st.chargedAfterRestart(t, reader, 30*time.Second)

	cons, err := st.s.JS.Consumer(ctx, st.s.Name, st.names.Durable)
	if err != nil {
		t.Fatalf("the durable is no pull consumer again: %v", err)
	}
	if got := cons.CachedInfo().Delivered.Consumer; got != 1 {
		t.Errorf("the replacing consumer made %d deliveries, want 1 (the new order): it started at stream sequence %d", got, cons.CachedInfo().Config.OptStartSeq)
	}
}

// TestPushConsumerReplacedAboveNothingThePullOwed: the push consumer's
// ack floor is no floor of this service. An operator deleted the durable,
// an order was published meanwhile, and the push consumer was created to
// deliver only what came after it (as DeliverNew does): its floor lay
// above that order, which no consumer had delivered. The replacement
// started just above the push consumer's floor, so the order was never
// charged, nor dead-lettered. It now starts at the lower of that floor
// and the last one the replica saw of its pull consumer.
func TestPushConsumerReplacedAboveNothingThePullOwed(t *testing.T) {
	st := newStalled(t, "PAYPUSHOWED")
	close(st.prov.release)
	gated, stop, _ := st.startGated(t)
	defer stop(context.Background())
	ctx := context.Background()

	const before = 2
	st.chargedAndSeen(t, before)
	if err := st.s.JS.DeleteConsumer(ctx, st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	publishOrder(t, st.s, st.names.Subject) // stream sequence before+1, owed
	st.createPush(t, "paypushowed.new", before+2)
	st.pullStoppedLogged(t)
	close(gated.open)
	runtest.Eventually(t, 30*time.Second, "the order published while the durable was replaced to be charged", func() bool {
		return st.prov.Charges() == before+1
	})
	if _, err := st.s.JS.Consumer(ctx, st.s.Name, st.names.Durable); err != nil {
		t.Fatalf("the durable is no pull consumer again: %v", err)
	}
}

// TestPushConsumerASubscriberReadsIsLeft: a push durable a subscriber is
// bound to is left to the person who made it: deleted, the subscriber's
// deliveries and acks would go. The restart fails, logged, until then.
func TestPushConsumerASubscriberReadsIsLeft(t *testing.T) {
	st := newStalled(t, "PAYPUSHREAD")
	close(st.prov.release)
	gated, stop, _ := st.startGated(t)
	defer stop(context.Background())
	ctx := context.Background()

	st.chargedAndSeen(t, 1)
	push := st.makePush(t, "paypushread.reader", 0)
	reading, err := push.Consume(func(m jetstream.Msg) { _ = m.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer reading.Stop()
	st.pullStoppedLogged(t)
	close(gated.open)
	runtest.Eventually(t, 10*time.Second, "the failed restart to be logged", func() bool {
		return strings.Contains(st.logs.errOf("pull not resumed"), "a subscriber reads it")
	})
	info, err := push.Info(ctx)
	if err != nil {
		t.Fatalf("the push consumer a subscriber reads is gone: %v", err)
	}
	if !info.PushBound {
		t.Error("the push consumer lost its subscriber")
	}
}

// makePush deletes st's durable and creates it again push based on
// deliverSubject, with the service's config digest, starting at stream
// sequence start (0: the stream's start), as an operator would.
func (st *stalled) makePush(t *testing.T, deliverSubject string, start uint64) jetstream.PushConsumer {
	t.Helper()
	if err := st.s.JS.DeleteConsumer(context.Background(), st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	return st.createPush(t, deliverSubject, start)
}

// createPush creates st's durable, which is gone, push based as makePush.
func (st *stalled) createPush(t *testing.T, deliverSubject string, start uint64) jetstream.PushConsumer {
	t.Helper()
	cfg, err := stream.WithDigest(st.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DeliverSubject = deliverSubject
	if start > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	push, err := st.s.JS.CreatePushConsumer(context.Background(), st.s.Name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return push
}
