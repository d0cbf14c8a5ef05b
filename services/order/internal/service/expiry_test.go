package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// expiredTotal reads shanhai_order_expired_total from /metrics.
func (h *harness) expiredTotal(t *testing.T) float64 {
	t.Helper()
	for _, l := range strings.Split(string(h.do("GET", "/metrics", "", "").Body), "\n") {
		if rest, ok := strings.CutPrefix(l, "shanhai_order_expired_total"); ok {
			_, value, _ := strings.Cut(rest, " ")
			value, _, _ = strings.Cut(value, " ") // an exemplar may follow
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return v
		}
	}
	t.Fatal("no shanhai_order_expired_total in /metrics")
	return 0
}

// An order still PENDING ORDER_PENDING_TIMEOUT after it was placed (payment
// gave up on it, or dead-lettered it, and sent nothing) is cancelled by the
// service's round with the order.cancelled a user's cancel writes, shown
// with cancel_reason payment_timeout and counted; an order inside the
// timeout is not. A payment.succeeded arriving late leaves it CANCELLED
// (payment refunds that charge on the cancel), and a user's cancel of it
// answers the order as it is. Each order.cancelled names its reason.
func TestOrderPendingPastTheTimeoutIsCancelled(t *testing.T) {
	const timeout = 10 * time.Minute
	h := newHarnessConfig(t, func(c *config.Config) { c.PendingTimeout = timeout })
	old := h.createOrder("alice", `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`)
	young := h.createOrder("alice", `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`)
	for id, age := range map[string]time.Duration{old.ID: timeout + time.Second, young.ID: timeout - time.Minute} {
		if err := h.svc.DB.Exec(`UPDATE orders SET created_at = ? WHERE id = ?`, time.Now().UTC().Add(-age), id).Error; err != nil {
			t.Fatal(err)
		}
	}
	before := h.expiredTotal(t)
	service.ExpireRound(h.svc, t.Context())

	r := h.do("GET", "/api/v1/orders/"+old.ID, "alice", "")
	var got struct {
		Status       string `json:"status"`
		CancelReason string `json:"cancel_reason"`
	}
	r.json(t, &got)
	if r.Status != http.StatusOK || got.Status != "CANCELLED" || got.CancelReason != "payment_timeout" {
		t.Fatalf("order past the timeout: %d %s", r.Status, r.Body)
	}
	if o := h.getOrder("alice", young.ID); o.Status != "PENDING" {
		t.Fatalf("order inside the timeout: %+v", o)
	}
	if d := h.expiredTotal(t) - before; d != 1 {
		t.Errorf("shanhai_order_expired_total moved by %v, want 1", d)
	}
	for id, want := range map[string]string{old.ID: "[order.created order.cancelled]", young.ID: "[order.created]"} {
		var types []string
		for _, m := range storetest.OutboxRows(t, h.svc.DB, id) {
			types = append(types, m.EventType)
		}
		if fmt.Sprint(types) != want {
			t.Errorf("outbox of %s: %v, want %s", id, types, want)
		}
	}

	outcomes := h.outcomes(t)
	h.publishResult(t, "payment.succeeded", "late-"+old.ID, old.ID, "", nil)
	h.drained(t)
	if o := h.getOrder("alice", old.ID); o.Status != "CANCELLED" || o.PaymentID != "" {
		t.Fatalf("a late payment.succeeded moved the expired order: %+v", o)
	}
	if d := h.outcomesSince(t, outcomes); d["unchanged"] != 1 || len(d) != 1 {
		t.Errorf("late result counted %v, want unchanged", d)
	}
	r = h.do("POST", "/api/v1/orders/"+old.ID+"/cancel", "alice", "")
	r.json(t, &got)
	if r.Status != http.StatusOK || got.Status != "CANCELLED" || got.CancelReason != "payment_timeout" {
		t.Fatalf("user's cancel of the expired order: %d %s", r.Status, r.Body)
	}
	r = h.do("POST", "/api/v1/orders/"+young.ID+"/cancel", "alice", "")
	r.json(t, &got)
	if r.Status != http.StatusOK || got.CancelReason != "user" {
		t.Fatalf("user's cancel: %d %s", r.Status, r.Body)
	}
	for id, want := range map[string]string{old.ID: "payment_timeout", young.ID: "user"} {
		if got := cancelledReason(t, h, id); got != want {
			t.Errorf("order.cancelled of %s: reason %q, want %q", id, got, want)
		}
	}
}

// cancelledReason is the reason in the payload of the one order.cancelled in
// the outbox of order id ("<absent>" when it has none).
func cancelledReason(t *testing.T, h *harness, id string) string {
	t.Helper()
	var reasons []string
	for _, m := range storetest.OutboxRows(t, h.svc.DB, id) {
		if m.EventType != "order.cancelled" {
			continue
		}
		var d struct {
			Reason *string `json:"reason"`
		}
		if err := json.Unmarshal(m.Payload, &d); err != nil {
			t.Fatalf("order.cancelled of %s: %v", id, err)
		}
		if d.Reason == nil {
			reasons = append(reasons, "<absent>")
		} else {
			reasons = append(reasons, *d.Reason)
		}
	}
	if len(reasons) != 1 {
		t.Fatalf("order.cancelled of %s: %d in the outbox, want 1", id, len(reasons))
	}
	return reasons[0]
}

// counterTotal reads an unlabelled counter from /metrics; ok is false when
// /metrics has no such series.
func (h *harness) counterTotal(t *testing.T, name string) (v float64, ok bool) {
	t.Helper()
	for _, l := range strings.Split(string(h.do("GET", "/metrics", "", "").Body), "\n") {
		rest, found := strings.CutPrefix(l, name)
		if found && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			_, value, _ := strings.Cut(rest, " ") // after the labels, if any
			value, _, _ = strings.Cut(value, " ") // an exemplar may follow
			v, err := strconv.ParseFloat(value, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return v, true
		}
	}
	return 0, false
}

// A round that fails (here the orders table is out of reach) is counted in
// shanhai_order_expiry_failures_total, which is there at 0 before any
// failure so that increase() sees the first; a clean round and a round the
// stop cuts off count nothing. Without it a failing expiry was a WARN line
// alone while orders stayed PENDING past the timeout.
func TestFailedExpiryRoundIsCounted(t *testing.T) {
	const name = "shanhai_order_expiry_failures_total"
	h := newHarnessConfig(t, func(c *config.Config) { c.PendingTimeout = 10 * time.Minute })
	before, ok := h.counterTotal(t, name)
	if !ok {
		t.Fatalf("no %s in /metrics before any failure; want a series at 0", name)
	}
	service.ExpireRound(h.svc, t.Context())
	if v, _ := h.counterTotal(t, name); v != before {
		t.Fatalf("a clean round moved %s from %v to %v", name, before, v)
	}

	if err := h.svc.DB.Exec(`ALTER TABLE orders RENAME TO orders_away`).Error; err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.svc.DB.Exec(`ALTER TABLE orders_away RENAME TO orders`) })
	stopped, cancel := context.WithCancel(t.Context())
	cancel()
	service.ExpireRound(h.svc, stopped)
	if v, _ := h.counterTotal(t, name); v != before {
		t.Fatalf("a round cut off by the stop moved %s from %v to %v", name, before, v)
	}
	service.ExpireRound(h.svc, t.Context())
	if v, _ := h.counterTotal(t, name); v != before+1 {
		t.Errorf("a failed round moved %s from %v to %v, want by 1", name, before, v)
	}
}
