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
	var cfg config.Config
	h := newHarness(t, func(c *config.Config) { cfg = *c })
	ctx := context.Background()
	const before = 3
	for range before {
		h.publishOrder(orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 1000, Currency: "EUR"}, "", nil)
	}
	h.drained()
	runtest.Eventually(t, 30*time.Second, "the ack floor to be saved", func() bool {
		var floor []uint64
		if err := h.svc.DB.Raw("SELECT ack_floor FROM consumer_floors WHERE consumer = ? AND stream = ?", h.names.Durable, h.names.Stream).Scan(&floor).Error; err != nil {
			t.Fatal(err)
		}
		return len(floor) == 1 && floor[0] == before
	})
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := h.stream.JS.DeleteConsumer(ctx, h.stream.Name, h.names.Durable); err != nil {
		t.Fatal(err)
	}

	again, err := service.New(ctx, cfg, service.Options{JetStream: h.names, Telemetry: provider})
	if err != nil {
		t.Fatal(err)
	}
	svctest.Serve(t, again, again.Server.Handler())
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 1000, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	runtest.Eventually(t, 30*time.Second, "the order published after the start to be charged", func() bool {
		var status []string
		if err := again.DB.Raw("SELECT status FROM payments WHERE order_id = ?", o.OrderID).Scan(&status).Error; err != nil {
			t.Fatal(err)
		}
		return len(status) == 1 && status[0] == "SUCCEEDED"
	})
	cons, err := h.stream.JS.Consumer(ctx, h.stream.Name, h.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Delivered.Consumer; got != 1 {
		t.Errorf("the consumer the start created made %d deliveries, want 1 (the new order): it started at stream sequence %d",
			got, cons.CachedInfo().Config.OptStartSeq)
	}
}
