package service_test

import (
	"context"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
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

// TestServiceReportsARefundTheProviderDeclinedOnce: a cancelled order whose
// refund the provider refuses is marked by a settle round, counted
// refund_declined and logged at ERROR with its payment and order ids, once,
// and asked about no more. Before, every round asked for the refund again
// and logged a warning, for ever.
func TestServiceReportsARefundTheProviderDeclinedOnce(t *testing.T) {
	logs := &testenv.LogBuffer{}
	h := newHarnessOptions(t, func(c *config.Config) { c.SettleInterval = 200 * time.Millisecond },
		func(o *service.Options) { o.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	ctx := context.Background()
	// The meter is the test process's, shared by every harness: the count
	// is compared with what it was before.
	before := settledCount(t, h, "refund_declined")
	// A SUCCEEDED charge whose key the provider remembers as declined (it
	// voided it), as a replica that voided the key while another charged
	// it would: it refuses the refund.
	p, err := payment.New(uuid.NewString(), uuid.NewString(), "alice", 5000, "EUR", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Payments.Claim(ctx, p); err != nil {
		t.Fatal(err)
	}
	p.Succeed(time.Now())
	if stored, _, err := h.svc.Payments.Complete(ctx, p); err != nil || !stored {
		t.Fatalf("store SUCCEEDED = %v, %v", stored, err)
	}
	if _, err := h.svc.Provider.Void(ctx, payment.Void{IdempotencyKey: p.ID(), AmountCents: 5000, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	if err := h.svc.App.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCancelled,
		Reason: "retries_exhausted", OrderID: p.OrderID()}); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 30*time.Second, "a settle round to mark the declined refund", func() bool {
		rows := h.payments(p.OrderID())
		return len(rows) == 1 && rows[0].Reason == payment.ReasonRefundDeclined
	})
	if rows := h.payments(p.OrderID()); rows[0].Status != string(payment.Succeeded) {
		t.Fatalf("payment %s; want SUCCEEDED: the money is still taken", rows[0].Status)
	}
	if again, err := h.svc.App.Settle.Handle(ctx); err != nil || again.Voided+again.Refunded+len(again.RefundDeclined) != 0 {
		t.Fatalf("a later settle round = %+v, %v; want nothing left to settle", again, err)
	}
	if n := settledCount(t, h, "refund_declined"); n != before+1 {
		t.Errorf("shanhai_payment_settled_total{outcome=\"refund_declined\"} went from %d to %d; want one more", before, n)
	}
	var errorsLogged []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, p.ID()) {
			errorsLogged = append(errorsLogged, line)
		}
	}
	if len(errorsLogged) != 1 || !strings.Contains(errorsLogged[0], `"order_id":"`+p.OrderID()+`"`) || !strings.Contains(errorsLogged[0], `"payment_id":"`+p.ID()+`"`) {
		t.Errorf("ERROR lines naming the payment = %q; want one, with its payment and order ids", errorsLogged)
	}
}

// TestServiceCountsFailedSettleRounds: what a settle round fails on is
// counted in shanhai_payment_settle_failures_total{reason}, which an alert
// watches: a refund the provider faults on as "provider" (per payment), a
// round whose database is gone as "database" and its dead-letter purge as
// "purge"; a clean round counts nothing. Before, each was only a WARN log
// line, and a round failing for hours fired no alert.
func TestServiceCountsFailedSettleRounds(t *testing.T) {
	h := newHarness(t, func(c *config.Config) {
		c.SettleInterval = 200 * time.Millisecond
		c.DeadLetterRetention = time.Hour
	})
	ctx := context.Background()
	reasons := []string{"database", "provider", "purge"}
	failures := func() map[string]int {
		m := map[string]int{}
		for _, r := range reasons {
			m[r] = settleFailures(t, h, r)
		}
		return m
	}
	// The meter is the test process's, shared by every harness: counts are
	// compared with what they were before.
	before := failures()
	// chargedAndCancelDead is a SUCCEEDED charge whose order.cancelled was
	// dead-lettered: a settle round refunds it.
	chargedAndCancelDead := func(setFault func()) string {
		t.Helper()
		o := app.ChargeOrder{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
		if c, err := h.svc.App.ChargeOrder.Handle(ctx, o); err != nil || c.Status != payment.Succeeded {
			t.Fatalf("charge = %+v, %v; want SUCCEEDED", c, err)
		}
		setFault()
		if err := h.svc.App.RecordDeadLetter.Handle(ctx, payment.DeadLetter{Consumer: "payment", EventType: adapters.OrderCancelled,
			Reason: "retries_exhausted", OrderID: o.OrderID}); err != nil {
			t.Fatal(err)
		}
		return o.OrderID
	}

	clean := chargedAndCancelDead(func() {})
	runtest.Eventually(t, 30*time.Second, "a clean settle round to refund the cancelled order", func() bool {
		rows := h.payments(clean)
		return len(rows) == 1 && rows[0].Status == string(payment.Refunded)
	})
	if now := failures(); !maps.Equal(now, before) {
		t.Fatalf("clean settle rounds changed shanhai_payment_settle_failures_total from %v to %v; want no failure counted", before, now)
	}

	faulted := chargedAndCancelDead(func() {
		h.setSettings(config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 2, FailureRate: 1, DeclineAboveCents: 100000})
	})
	runtest.Eventually(t, 30*time.Second, `a settle round to count the refund's fault (reason="provider")`, func() bool {
		return settleFailures(t, h, "provider") > before["provider"]
	})
	if rows := h.payments(faulted); len(rows) != 1 || rows[0].Status != string(payment.Succeeded) {
		t.Fatalf("payment %+v; want SUCCEEDED, its refund faulting", rows)
	}

	sqlDB, err := h.svc.DB.DB()
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.Close(); err != nil {
		t.Fatal(err)
	}
	runtest.Eventually(t, 30*time.Second, `a settle round on a closed database to count reason="database" and "purge"`, func() bool {
		return settleFailures(t, h, "database") > before["database"] && settleFailures(t, h, "purge") > before["purge"]
	})
}

// settleFailures is shanhai_payment_settle_failures_total{reason} on
// /metrics, 0 while it has no line.
func settleFailures(t *testing.T, h *harness, reason string) int {
	t.Helper()
	return counterValue(t, h, "shanhai_payment_settle_failures_total", "reason", reason)
}

// settledCount is shanhai_payment_settled_total{outcome} on /metrics, 0
// while it has no line.
func settledCount(t *testing.T, h *harness, outcome string) int {
	t.Helper()
	return counterValue(t, h, "shanhai_payment_settled_total", "outcome", outcome)
}

// counterValue is the counter name{label="value"} on /metrics (the last
// label of the line, as the exporter sorts them), 0 while it has no line.
func counterValue(t *testing.T, h *harness, name, label, value string) int {
	t.Helper()
	for line := range strings.Lines(string(h.get("/metrics", "").Body)) {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, label+`="`+value+`"}`) {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]))
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return n
	}
	return 0
}
