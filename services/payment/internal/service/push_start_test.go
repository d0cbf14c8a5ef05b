package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/pkg/stream"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// TestStartOnAPushDurableNobodyReadsReplacesIt: the service's own start,
// with the durable made push based by hand while every replica was down.
// A running replica replaces such a durable when no subscriber is bound
// to it, but a start looked it up as a pull consumer and failed (not a
// pull consumer), so no replica that started meanwhile became ready. The
// start now replaces it too, just above the lower of the push consumer's
// floor and the one saved in the database: the order published while the
// durable was made push based (above the saved floor, below the push
// consumer's start) is charged, and so is one published after the start,
// each delivered once.
func TestStartOnAPushDurableNobodyReadsReplacesIt(t *testing.T) {
	const before = 3
	h, cfg := newGone(t, before)
	ctx := context.Background()
	owed := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 1000, Currency: "EUR"}
	h.publishOrder(owed, "", nil) // stream sequence before+1: above the saved floor
	h.createPush(cfg, "paystartpush.nobody", before+2)

	if err := h.startAgain(cfg); err != nil {
		t.Fatalf("a start on a push durable nobody reads: %v", err)
	}
	after := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 1000, Currency: "EUR"}
	h.publishOrder(after, "", nil)
	h.charged(owed)
	h.charged(after)
	h.drained()
	if got := h.svc.Provider.Charges(); got != 2 {
		t.Errorf("the started service charged %d times, want 2 (the owed order and the new one)", got)
	}
	cons, err := h.stream.JS.Consumer(ctx, h.stream.Name, h.names.Durable)
	if err != nil {
		t.Fatalf("the durable is no pull consumer again: %v", err)
	}
	if got := cons.CachedInfo().Delivered.Consumer; got != 2 {
		t.Errorf("the consumer the start put back made %d deliveries, want 2 (the owed order and the new one): it started at stream sequence %d",
			got, cons.CachedInfo().Config.OptStartSeq)
	}
}

// TestStartOnAPushDurableASubscriberReadsFails: a push durable a
// subscriber is bound to is left to the person who made it, at a start as
// on a running replica: the start fails with an error naming the consumer,
// and the subscriber keeps it.
func TestStartOnAPushDurableASubscriberReadsFails(t *testing.T) {
	h, cfg := newGone(t, 1)
	ctx := context.Background()
	push := h.createPush(cfg, "paystartpush.reader", 0)
	reading, err := push.Consume(func(m jetstream.Msg) { _ = m.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer reading.Stop()
	runtest.Eventually(t, 10*time.Second, "the subscriber to be bound", func() bool {
		info, err := push.Info(ctx)
		return err == nil && info.PushBound
	})

	err = h.startAgain(cfg)
	if err == nil {
		t.Fatal("a start on a push durable a subscriber reads succeeded")
	}
	if !strings.Contains(err.Error(), "consumer "+h.names.Durable+" is push based") || !strings.Contains(err.Error(), "a subscriber reads it") {
		t.Errorf("start error = %v; want one naming consumer %s and its subscriber", err, h.names.Durable)
	}
	info, err := push.Info(ctx)
	if err != nil || !info.PushBound {
		t.Errorf("the push consumer a subscriber reads was not left as it was: %v", err)
	}
}

// createPush creates h's durable, which is gone, push based on
// deliverSubject with the service's config digest, starting at stream
// sequence start (0: the stream's start), as an operator would.
func (h *harness) createPush(cfg config.Config, deliverSubject string, start uint64) jetstream.PushConsumer {
	h.t.Helper()
	withDigest, err := stream.WithDigest(adapters.ConsumerConfig(h.names, cfg.MaxDeliver))
	if err != nil {
		h.t.Fatal(err)
	}
	withDigest.DeliverSubject = deliverSubject
	if start > 0 {
		withDigest.DeliverPolicy, withDigest.OptStartSeq = jetstream.DeliverByStartSequencePolicy, start
	}
	push, err := h.stream.JS.CreatePushConsumer(context.Background(), h.stream.Name, withDigest)
	if err != nil {
		h.t.Fatal(err)
	}
	return push
}
