package service_test

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// TestRedeliveredRefundAlarmsOnce: a payment.refunded of an order that is
// not CANCELLED is an alarm (TestRefundOfAnOrderNotCancelledIsAnAlarm), and
// its redelivery (an ack lost, a relay that sent the record twice) is the
// same event: it must be recorded with the first, counted "duplicate" and
// stay silent, as a redelivered contradicting success or failure does.
// Before, the refund was only read, never recorded, and every delivery
// logged the alarm again, each one an operator's incident for one refund.
// The saga's own refund of a CANCELLED order is not recorded (it changes
// nothing and alarms no one): redelivered, it is informational again.
func TestRedeliveredRefundAlarmsOnce(t *testing.T) {
	logs := &testenv.LogBuffer{}
	h := newHarness(t, func(o *service.Options) { o.Logger = telemetry.NewLogger(logs, slog.LevelInfo) })
	item := `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`
	paid, cancelled := h.createOrder("alice", item), h.createOrder("alice", item)
	if r := h.do("POST", "/api/v1/orders/"+cancelled.ID+"/cancel", "alice", ""); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	h.publishResult(t, "payment.succeeded", "first-"+paid.ID, paid.ID, "", nil)
	h.publishResult(t, "payment.succeeded", "first-"+cancelled.ID, cancelled.ID, "", nil)
	h.drained(t)
	before := h.outcomes(t)
	for range 2 {
		h.publishResult(t, "payment.refunded", "refund-"+paid.ID, paid.ID, "order_cancelled", nil)
		h.publishResult(t, "payment.refunded", "refund-"+cancelled.ID, cancelled.ID, "order_cancelled", nil)
	}
	h.drained(t)

	got := map[string]float64{}
	for k, v := range h.outcomes(t) {
		if d := v - before[k]; d != 0 {
			got[k] = d
		}
	}
	if want := map[string]float64{"contradicts": 1, "duplicate": 1, "informational": 2}; !maps.Equal(got, want) {
		t.Errorf("payment result outcomes counted %v, want %v", got, want)
	}
	alarms := 0
	for l := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["level"] == "ERROR" {
			alarms++
		}
	}
	if alarms != 1 {
		t.Errorf("%d ERROR log lines for one refund of a PAID order delivered twice, want 1\nlog:\n%s", alarms, logs)
	}
	if o := h.getOrder("alice", paid.ID); o.Status != "PAID" {
		t.Errorf("paid order after a refund = %+v", o)
	}
}
