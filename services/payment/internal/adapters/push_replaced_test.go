package adapters_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
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
	gated := gatedJS{JetStream: st.s.JS, open: make(chan struct{})}
	stop, reader := st.startRecreatingWith(t, 1, gated)
	defer stop(context.Background())
	ctx := context.Background()

	const before = 3
	for range before {
		publishOrder(t, st.s, st.names.Subject)
	}
	runtest.Eventually(t, 10*time.Second, "the earlier orders to be charged and seen acked", func() bool {
		return st.prov.Charges() == before && adapters.AckFloorSeen(st.events) == before
	})
	if err := st.s.JS.DeleteConsumer(ctx, st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	push, err := stream.WithDigest(st.cfg)
	if err != nil {
		t.Fatal(err)
	}
	push.DeliverSubject = "paypushback.nobody"
	push.DeliverPolicy, push.OptStartSeq = jetstream.DeliverByStartSequencePolicy, before+1
	if _, err := st.s.JS.CreatePushConsumer(ctx, st.s.Name, push); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 10*time.Second, "the stopped pull to be logged", func() bool {
		return st.logs.seen(pullStopped)
	})
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

// TestPushConsumerASubscriberReadsIsLeft: a push durable a subscriber is
// bound to is left to the person who made it: deleted, the subscriber's
// deliveries and acks would go. The restart fails, logged, until then.
func TestPushConsumerASubscriberReadsIsLeft(t *testing.T) {
	st := newStalled(t, "PAYPUSHREAD")
	close(st.prov.release)
	gated := gatedJS{JetStream: st.s.JS, open: make(chan struct{})}
	stop, _ := st.startRecreatingWith(t, 1, gated)
	defer stop(context.Background())
	ctx := context.Background()

	publishOrder(t, st.s, st.names.Subject)
	runtest.Eventually(t, 10*time.Second, "the first order to be charged", func() bool { return st.prov.Charges() == 1 })
	if err := st.s.JS.DeleteConsumer(ctx, st.s.Name, st.names.Durable); err != nil {
		t.Fatal(err)
	}
	cfg, err := stream.WithDigest(st.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DeliverSubject = "paypushread.reader"
	push, err := st.s.JS.CreatePushConsumer(ctx, st.s.Name, cfg)
	if err != nil {
		t.Fatal(err)
	}
	reading, err := push.Consume(func(m jetstream.Msg) { _ = m.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer reading.Stop()
	runtest.Eventually(t, 10*time.Second, "the stopped pull to be logged", func() bool {
		return st.logs.seen(pullStopped)
	})
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
