package service_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// publishCancel publishes order.cancelled as the bridge would.
func (h *harness) publishCancel(o orderEvent, eventID string) {
	h.t.Helper()
	h.publishEvent("order.cancelled", o, eventID, nil)
}

// eventTypes lists the outbox rows written for an order, oldest first.
func (h *harness) eventTypes(orderID string) []string {
	h.t.Helper()
	var rows []outbox.Message
	if err := h.svc.DB.Where("key = ?", orderID).Order("id").Find(&rows).Error; err != nil {
		h.t.Fatal(err)
	}
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.EventType
	}
	return out
}

func TestCancelAfterChargeRefundsExactlyOnce(t *testing.T) {
	h := newHarness(t, nil)
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 4200, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	runtest.Eventually(t, 20*time.Second, "the charge", func() bool {
		rows := h.payments(o.OrderID)
		return len(rows) == 1 && rows[0].Status == "SUCCEEDED"
	})
	// The same cancel twice (a redelivery) and a second cancel event.
	h.publishCancel(o, "cancel-"+o.OrderID)
	h.publishCancel(o, "cancel-"+o.OrderID)
	h.publishCancel(o, "")
	h.drained()

	rows := h.payments(o.OrderID)
	if len(rows) != 1 || rows[0].Status != "REFUNDED" || rows[0].Reason != "order_cancelled" {
		t.Fatalf("payments = %+v", rows)
	}
	if c, r := h.svc.Provider.Charges(), h.svc.Provider.Refunds(); c != 1 || r != 1 {
		t.Fatalf("provider charges %d, refunds %d; want 1 and 1", c, r)
	}
	if got := h.eventTypes(o.OrderID); !slices.Equal(got, []string{"payment.succeeded", "payment.refunded"}) {
		t.Fatalf("outbox = %v", got)
	}
	var refunded outbox.Message
	if err := h.svc.DB.Where("key = ? AND event_type = ?", o.OrderID, "payment.refunded").Take(&refunded).Error; err != nil {
		t.Fatal(err)
	}
	var d map[string]any
	if err := json.Unmarshal(refunded.Payload, &d); err != nil {
		t.Fatalf("payload %s: %v", refunded.Payload, err)
	}
	if d["payment_id"] != rows[0].ID || d["order_id"] != o.OrderID || d["user_id"] != "alice" || d["amount_cents"] != 4200.0 || d["reason"] != "order_cancelled" {
		t.Fatalf("payment.refunded payload = %v", d)
	}
	r := h.get("/api/v1/payments/"+rows[0].ID, "alice")
	var view struct{ Status string }
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &view) != nil || view.Status != "REFUNDED" {
		t.Fatalf("GET payment: %d %s", r.Status, r.Body)
	}
}

func TestCancelBeforeCreateNeverCharges(t *testing.T) {
	h := newHarness(t, nil)
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 4200, Currency: "EUR"}
	h.publishCancel(o, "")
	h.drained()
	h.publishOrder(o, "", nil)
	h.publishOrder(o, "", nil)
	h.drained()
	rows := h.payments(o.OrderID)
	if len(rows) != 1 || rows[0].Status != "CANCELLED" {
		t.Fatalf("payments = %+v", rows)
	}
	if c, r := h.svc.Provider.Charges(), h.svc.Provider.Refunds(); c != 0 || r != 0 {
		t.Fatalf("provider charges %d, refunds %d; want none", c, r)
	}
	if got := h.eventTypes(o.OrderID); len(got) != 0 {
		t.Fatalf("outbox = %v", got)
	}
}

// TestConcurrentCreateAndCancelLeaveNothingCharged publishes create and
// cancel for many orders, half of them cancel first, so the consumer's pool
// handles the two in every order and at once. Every order is cancelled, so
// whatever the interleaving no charge may stand: every charge the provider
// made is refunded, and the rows agree with the provider.
func TestConcurrentCreateAndCancelLeaveNothingCharged(t *testing.T) {
	h := newHarness(t, nil)
	// Latency spread so some cancels land while the charge is in flight.
	h.setSettings(config.Dynamic{LatencyMedianMs: 3, LatencyP99Ms: 20, FailureRate: 0, DeclineAboveCents: 100000})
	const n = 200
	orders := make([]orderEvent, n)
	var wg sync.WaitGroup
	for i := range orders {
		orders[i] = orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: int64(100 + i), Currency: "EUR"}
	}
	// Two publishers, one per type, interleave the streams of creates and
	// cancels; a shuffled half of the orders has its cancel published first.
	cancelFirst := map[string]bool{}
	for _, i := range rand.Perm(n)[:n/2] {
		cancelFirst[orders[i].OrderID] = true
	}
	for _, first := range []bool{true, false} {
		wg.Go(func() {
			for _, o := range orders {
				if cancelFirst[o.OrderID] == first {
					h.publishCancel(o, "")
				} else {
					h.publishOrder(o, "", nil)
				}
			}
		})
	}
	wg.Wait()
	h.drained()

	statuses := map[string]int{}
	for _, o := range orders {
		rows := h.payments(o.OrderID)
		if len(rows) != 1 {
			t.Fatalf("order %s has %d payment rows", o.OrderID, len(rows))
		}
		p := rows[0]
		statuses[p.Status]++
		charged, refunded := h.svc.Provider.Charged(p.ID), h.svc.Provider.Refunded(p.ID)
		switch p.Status {
		case "REFUNDED":
			if !charged || !refunded {
				t.Errorf("order %s REFUNDED but provider charged=%v refunded=%v", o.OrderID, charged, refunded)
			}
			if got := h.eventTypes(o.OrderID); !slices.Equal(got, []string{"payment.succeeded", "payment.refunded"}) {
				t.Errorf("order %s outbox = %v", o.OrderID, got)
			}
		case "CANCELLED":
			if charged {
				t.Errorf("order %s CANCELLED but charged", o.OrderID)
			}
			if got := h.eventTypes(o.OrderID); len(got) != 0 {
				t.Errorf("order %s outbox = %v", o.OrderID, got)
			}
		default:
			t.Errorf("order %s ended %s; a cancelled order must end REFUNDED or CANCELLED", o.OrderID, p.Status)
		}
	}
	c, r := h.svc.Provider.Charges(), h.svc.Provider.Refunds()
	ids := make([]string, n)
	for i, o := range orders {
		ids[i] = o.OrderID
	}
	var inFlight int64 // cancels that found the charge in flight (the flag path)
	h.svc.DB.Table("payments").Where("order_id IN ? AND cancel_requested", ids).Count(&inFlight)
	t.Logf("statuses %v; provider charges %d, refunds %d; cancels that met a charge in flight %d", statuses, c, r, inFlight)
	if c != r || c != statuses["REFUNDED"] {
		t.Fatalf("provider charges %d, refunds %d, REFUNDED rows %d: a charge stands", c, r, statuses["REFUNDED"])
	}
	if dl, _ := h.svc.Payments.DeadLetters(context.Background(), 10); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

func TestRefundUnderProviderFaultsRetriesAndCompletes(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 999, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	runtest.Eventually(t, 20*time.Second, "the charge", func() bool {
		rows := h.payments(o.OrderID)
		return len(rows) == 1 && rows[0].Status == "SUCCEEDED"
	})
	h.setSettings(config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 2, FailureRate: 1, DeclineAboveCents: 100000})
	h.publishCancel(o, "")
	runtest.Eventually(t, 15*time.Second, "a redelivery after the refund fault", func() bool {
		c, err := h.stream.JS.Consumer(ctx, h.names.Stream, h.names.Durable)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumRedelivered > 0
	})
	if rows := h.payments(o.OrderID); rows[0].Status != "SUCCEEDED" || h.svc.Provider.Refunds() != 0 {
		t.Fatalf("during the fault: %+v, %d refunds", rows, h.svc.Provider.Refunds())
	}
	h.setSettings(config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 2, FailureRate: 0, DeclineAboveCents: 100000})
	runtest.Eventually(t, 20*time.Second, "the refund after the fault cleared", func() bool {
		rows := h.payments(o.OrderID)
		return rows[0].Status == "REFUNDED"
	})
	h.drained()
	if c, r := h.svc.Provider.Charges(), h.svc.Provider.Refunds(); c != 1 || r != 1 {
		t.Fatalf("provider charges %d, refunds %d", c, r)
	}
	if got := h.eventTypes(o.OrderID); !slices.Equal(got, []string{"payment.succeeded", "payment.refunded"}) {
		t.Fatalf("outbox = %v", got)
	}
	if dl, _ := h.svc.Payments.DeadLetters(ctx, 10); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

// TestCancelAfterRestartIsRefunded: an order charged before payment restarts
// and cancelled after it ends REFUNDED. The simulated provider's memory of
// charges is the process's, and it used to refuse a refund of a charge it had
// no record of, so the cancel was retried until dead-lettered and the
// customer stayed charged.
func TestCancelAfterRestartIsRefunded(t *testing.T) {
	var cfg config.Config
	h := newHarness(t, func(c *config.Config) { c.MaxDeliver = 3; cfg = *c })
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 500, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	runtest.Eventually(t, 20*time.Second, "the charge", func() bool {
		rows := h.payments(o.OrderID)
		return len(rows) == 1 && rows[0].Status == "SUCCEEDED"
	})
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	// The same deployment restarted: same database, stream, durable and settings.
	restarted, err := service.New(context.Background(), cfg, service.Options{JetStream: h.names, Telemetry: provider})
	if err != nil {
		t.Fatal(err)
	}
	svctest.Serve(t, restarted, restarted.Server.Handler())
	h.publishCancel(o, "")
	h.drained()

	var rows []paymentRow
	if err := restarted.DB.Table("payments").Where("order_id = ?", o.OrderID).Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Status != "REFUNDED" {
		dead, _ := restarted.Payments.DeadLetters(context.Background(), 10)
		var reasons []string
		for _, d := range dead {
			reasons = append(reasons, d.Reason)
		}
		t.Fatalf("payments after a cancel following a restart = %+v, dead letters %q; want one REFUNDED", rows, reasons)
	}
	if r, u := restarted.Provider.Refunds(), restarted.Provider.UnrecordedRefunds(); r != 1 || u != 1 {
		t.Fatalf("provider refunds %d, of which %d without a record of the charge; want 1 and 1", r, u)
	}
}
