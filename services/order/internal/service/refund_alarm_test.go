package service_test

import (
	"maps"
	"testing"
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
	h, logs, paid, cancelled, before := paidAndCancelled(t)
	for range 2 {
		h.publishResult(t, "payment.refunded", "refund-"+paid.ID, paid.ID, "order_cancelled", nil)
		h.publishResult(t, "payment.refunded", "refund-"+cancelled.ID, cancelled.ID, "order_cancelled", nil)
	}
	h.drained(t)

	got := h.outcomesSince(t, before)
	if want := map[string]float64{"contradicts": 1, "duplicate": 1, "informational": 2}; !maps.Equal(got, want) {
		t.Errorf("payment result outcomes counted %v, want %v", got, want)
	}
	if alarms := len(errorLines(t, logs)); alarms != 1 {
		t.Errorf("%d ERROR log lines for one refund of a PAID order delivered twice, want 1\nlog:\n%s", alarms, logs)
	}
	if o := h.getOrder("alice", paid.ID); o.Status != "PAID" {
		t.Errorf("paid order after a refund = %+v", o)
	}
}
