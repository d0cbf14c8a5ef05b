package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// TestServiceRunsTheSettleRound: the service runs the settle round every
// SETTLE_INTERVAL and counts what it settles. A charged order whose
// order.cancelled was dead-lettered (its refund kept faulting) is refunded
// by a round, with no delivery and no operator, and counted refunded.
func TestServiceRunsTheSettleRound(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.SettleInterval = 200 * time.Millisecond })
	ctx := context.Background()
	o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
	if c, err := h.svc.App.ChargeOrder.Handle(ctx, o); err != nil || c.Status != payment.Succeeded {
		t.Fatalf("charge = %+v, %v; want SUCCEEDED", c, err)
	}
	if err := h.svc.App.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCancelled,
		Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 30*time.Second, "the settle round to refund the cancelled order", func() bool {
		rows := h.payments(o.OrderID)
		return len(rows) == 1 && rows[0].Status == string(payment.Refunded)
	})
	metrics := h.get("/metrics", "")
	counted := false
	for line := range strings.Lines(string(metrics.Body)) {
		counted = counted || strings.HasPrefix(line, "shanhai_payment_settled_total{") && strings.Contains(line, `outcome="refunded"}`)
	}
	if !counted {
		t.Errorf("/metrics does not count the refund settled:\n%s", metrics.Body)
	}
}
