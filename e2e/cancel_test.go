package e2e

import (
	"net/http"
	"testing"
	"time"
)

// cancelled checks the saga's compensation across every process: the order
// service's order.cancelled goes through its outbox, Kafka and the bridge to
// payment, which must leave no cancelled order charged.
//
// First an order cancelled while its charge is held up by provider faults:
// payment flags the charge in flight, and its next delivery voids it instead
// of charging (CANCELLED). The cancel reaches payment through Kafka and the
// bridge after the heal, so a retry may land first and be refunded
// (REFUNDED): either way nothing stays charged. Then orders cancelled right after they are
// placed, with a healthy provider: however the create and the cancel race,
// each ends REFUNDED (charged first) or CANCELLED (never charged).
func cancelled(t *testing.T, e *env) {
	heal := faultProvider(t, e)

	items := cheapItems(t, e)
	o, _, _ := createOrder(t, e, items, nil)
	deadline := time.Now().Add(20 * time.Second)
	for ps := payments(t, e, o.ID); len(ps) != 1 || ps[0].Status != "PENDING"; ps = payments(t, e, o.ID) {
		if time.Now().After(deadline) {
			t.Fatalf("order %s: no charge attempt within 20 s (payments %+v)", o.ID, ps)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancelOrder(t, e, o.ID)
	heal()
	// Redeliveries back off up to 16 s each; a minute covers several.
	if ps := waitPayment(t, e, o.ID, 60*time.Second, "CANCELLED", "REFUNDED"); ps.Status != "CANCELLED" && ps.Status != "REFUNDED" || ps.Reason != "order_cancelled" {
		t.Fatalf("order %s cancelled during a fault: payment %+v, want CANCELLED or REFUNDED (order_cancelled)", o.ID, ps)
	}

	var ids []string
	for range 5 {
		o, _, _ := createOrder(t, e, items, nil)
		cancelOrder(t, e, o.ID)
		ids = append(ids, o.ID)
	}
	for _, id := range ids {
		if ps := waitPayment(t, e, id, 30*time.Second, "REFUNDED", "CANCELLED"); ps.Status != "REFUNDED" && ps.Status != "CANCELLED" {
			t.Errorf("cancelled order %s: payment %+v, want REFUNDED or CANCELLED", id, ps)
		}
	}
	// A late payment.succeeded or the payment.refunded never moves the order.
	for _, id := range append(ids, o.ID) {
		if got, _ := waitStatus(t, e, id, "CANCELLED", 0); got.Status != "CANCELLED" {
			t.Errorf("order %s is %s, want CANCELLED", id, got.Status)
		}
	}
}

func cancelOrder(t *testing.T, e *env, id string) {
	t.Helper()
	r, err := e.cli.Do(ctx(t), http.MethodPost, "/api/v1/orders/"+id+"/cancel", e.token, nil, nil)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("cancel order %s: %v %v", id, r, err)
	}
}

// waitPayment polls the order's payment until its status is one of want or
// d passes, and returns the last one seen.
func waitPayment(t *testing.T, e *env, orderID string, d time.Duration, want ...string) (last struct{ Status, Reason string }) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if ps := payments(t, e, orderID); len(ps) == 1 {
			last.Status, last.Reason = ps[0].Status, ps[0].Reason
			for _, w := range want {
				if last.Status == w {
					return last
				}
			}
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
}
