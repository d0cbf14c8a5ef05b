package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// TestStartFindingTheConsumerGoneSkipsWhatWasSettled: the service's own
// wiring. A service that started and found its durable consumer gone
// (deleted while every replica was down) created it from the stream's
// start, and every order already charged was delivered again. Now the
// running service saves the consumer's ack floor to its database and the
// next start creates the consumer just above it: the order published after
// is that consumer's one delivery.
func TestStartFindingTheConsumerGoneSkipsWhatWasSettled(t *testing.T) {
	h, cfg := newGone(t, 3)
	ctx := context.Background()

	if err := h.startAgain(cfg); err != nil {
		t.Fatal(err)
	}
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 1000, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	h.charged(o)
	cons, err := h.stream.JS.Consumer(ctx, h.stream.Name, h.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Delivered.Consumer; got != 1 {
		t.Errorf("the consumer the start created made %d deliveries, want 1 (the new order): it started at stream sequence %d",
			got, cons.CachedInfo().Config.OptStartSeq)
	}
}

// newGone runs the service until it has charged n orders and saved the
// ack floor n, stops it and deletes its durable consumer, as while every
// replica was down. It returns the service's config for the next start.
func newGone(t *testing.T, n uint64) (*harness, config.Config) {
	t.Helper()
	var cfg config.Config
	h := newHarness(t, func(c *config.Config) { cfg = *c })
	for range n {
		h.publishOrder(orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 1000, Currency: "EUR"}, "", nil)
	}
	h.drained()
	runtest.Eventually(t, 30*time.Second, "the ack floor to be saved", func() bool {
		var floor []uint64
		if err := h.svc.DB.Raw("SELECT ack_floor FROM consumer_floors WHERE consumer = ? AND stream = ?", h.names.Durable, h.names.Stream).Scan(&floor).Error; err != nil {
			t.Fatal(err)
		}
		return len(floor) == 1 && floor[0] == n
	})
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.stream.JS.DeleteConsumer(context.Background(), h.stream.Name, h.names.Durable); err != nil {
		t.Fatal(err)
	}
	return h, cfg
}

// startAgain starts the service again on cfg, h's stream and database,
// and makes it h's service.
func (h *harness) startAgain(cfg config.Config) error {
	h.t.Helper()
	again, err := service.New(context.Background(), cfg, service.Options{JetStream: h.names, Telemetry: provider})
	if err != nil {
		return err
	}
	h.srv, h.svc = svctest.Serve(h.t, again, again.Server.Handler()), again
	return nil
}

// charged waits until o's payment is stored SUCCEEDED.
func (h *harness) charged(o orderEvent) {
	h.t.Helper()
	runtest.Eventually(h.t, 30*time.Second, "order "+o.OrderID+" to be charged", func() bool {
		rows := h.payments(o.OrderID)
		return len(rows) == 1 && rows[0].Status == "SUCCEEDED"
	})
}
