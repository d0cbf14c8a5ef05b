package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

func (h *harness) outboxCount(orderID string) int64 {
	var n int64
	h.svc.DB.Model(&outbox.Message{}).Where("key = ?", orderID).Count(&n)
	return n
}

func TestChargesOrderFromJetStreamAndEmitsResultToKafka(t *testing.T) {
	h := newHarness(t, nil)
	tail := svctest.TailKafka(t, adapters.Topic)
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xa, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{9, 9, 9, 9, 9, 9, 9, 9},
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 5000, Currency: "EUR"}
	h.publishOrder(o, "", &parent)

	m := tail.Find(t, o.OrderID, 20*time.Second)
	hd := svctest.HeaderMap(m.Headers)
	if hd["ce_type"] != "payment.succeeded" || hd["ce_specversion"] != "1.0" || hd["ce_source"] != adapters.Source || hd["ce_id"] == "" {
		t.Fatalf("headers = %v", hd)
	}
	if !strings.HasPrefix(hd["traceparent"], "00-"+parent.TraceID().String()+"-") {
		t.Errorf("traceparent %q does not continue trace %s", hd["traceparent"], parent.TraceID())
	}
	env, err := event.FromHeaders(hd, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	var d adapters.ResultData
	if err := env.Decode(&d); err != nil {
		t.Fatal(err)
	}
	rows := h.payments(o.OrderID)
	if len(rows) != 1 || rows[0].Status != "SUCCEEDED" || d.PaymentID != rows[0].ID || d.OrderID != o.OrderID || d.UserID != "alice" || d.AmountCents != 5000 || d.Currency != "EUR" {
		t.Fatalf("payload %+v, rows %+v", d, rows)
	}

	// Own data only, over HTTP.
	if r := h.get("/api/v1/payments/"+d.PaymentID, "alice"); r.Status != http.StatusOK || !strings.Contains(string(r.Body), o.OrderID) {
		t.Fatalf("own payment: %d %s", r.Status, r.Body)
	}
	if r := h.get("/api/v1/payments/"+d.PaymentID, "bob"); r.Status != http.StatusNotFound {
		t.Fatalf("bob reads alice's payment: %d %s", r.Status, r.Body)
	}
	if r := h.get("/api/v1/payments?order_id="+o.OrderID, "bob"); r.Status != http.StatusOK || string(r.Body) != `{"payments":[]}` {
		t.Fatalf("bob lists alice's order: %d %s", r.Status, r.Body)
	}
	if r := h.get("/api/v1/payments?order_id="+o.OrderID, "alice"); !strings.Contains(string(r.Body), d.PaymentID) {
		t.Fatalf("alice lists her order: %d %s", r.Status, r.Body)
	}

	// The consumer span continued the published trace.
	if !svctest.Continues(spans.Ended(), h.names.Subject+" process", parent) {
		t.Error("no consumer span continues the published trace")
	}
}

func TestDeclineRuleEmitsPaymentFailed(t *testing.T) {
	h := newHarness(t, nil)
	tail := svctest.TailKafka(t, adapters.Topic)
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 179800, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	m := tail.Find(t, o.OrderID, 20*time.Second)
	hd := svctest.HeaderMap(m.Headers)
	if hd["ce_type"] != "payment.failed" || !strings.Contains(string(m.Value), `"reason":"amount_over_limit"`) {
		t.Fatalf("got %s %s", hd["ce_type"], m.Value)
	}
	if h.svc.Provider.Charges() != 0 {
		t.Fatal("a declined order reached the provider")
	}
}

func TestRedeliveryNeverChargesTwice(t *testing.T) {
	h := newHarness(t, nil)
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 1234, Currency: "EUR"}
	// The same event three times (bridge or relay re-sends), and a second
	// order.created event for the same order with another id.
	for range 3 {
		h.publishOrder(o, "evt-"+o.OrderID, nil)
	}
	h.publishOrder(o, "", nil)
	h.drained()
	rows := h.payments(o.OrderID)
	if len(rows) != 1 || rows[0].Status != "SUCCEEDED" {
		t.Fatalf("payments = %+v", rows)
	}
	if n := h.svc.Provider.Charges(); n != 1 {
		t.Fatalf("provider charged %d times", n)
	}
	if n := h.outboxCount(o.OrderID); n != 1 {
		t.Fatalf("%d result events, want 1", n)
	}
}

func TestProviderFaultIsRetriedUntilCleared(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.setSettings(config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 2, FailureRate: 1, DeclineAboveCents: 100000})
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 999, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	runtest.Eventually(t, 15*time.Second, "a redelivery after the fault", func() bool {
		c, err := h.stream.JS.Consumer(ctx, h.names.Stream, h.names.Durable)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumRedelivered > 0
	})
	if rows := h.payments(o.OrderID); len(rows) != 1 || rows[0].Status != "PENDING" || h.outboxCount(o.OrderID) != 0 {
		t.Fatalf("during the fault: %+v, %d events", rows, h.outboxCount(o.OrderID))
	}
	h.setSettings(config.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 2, FailureRate: 0, DeclineAboveCents: 100000})
	runtest.Eventually(t, 20*time.Second, "the charge to succeed after the fault cleared", func() bool {
		rows := h.payments(o.OrderID)
		return len(rows) == 1 && rows[0].Status == "SUCCEEDED"
	})
	if n := h.outboxCount(o.OrderID); n != 1 {
		t.Fatalf("%d result events", n)
	}
	if dl, _ := h.svc.Payments.DeadLetters(ctx, 10); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}
}

func TestUnprocessableMessagesAreDeadLettered(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	h.publishRaw(nats.Header{}, []byte{0xff, 'x'})
	bad := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 0, Currency: "EUR"}
	h.publishOrder(bad, "", nil)
	h.drained()
	dl, err := h.svc.Payments.DeadLetters(ctx, 10)
	if err != nil || len(dl) != 2 {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	reasons := fmt.Sprint(dl[0].Reason, " | ", dl[1].Reason)
	if !strings.Contains(reasons, "not a CloudEvent") || !strings.Contains(reasons, "total_cents must be positive") {
		t.Fatalf("reasons = %s", reasons)
	}
	if len(h.payments(bad.OrderID)) != 0 {
		t.Fatal("an invalid order was claimed")
	}
	metrics := h.get("/metrics", "")
	for _, cause := range []string{"invalid_event", "invalid_order"} {
		if !strings.Contains(string(metrics.Body), `shanhai_payment_dead_letters_total{cause="`+cause+`"`) {
			t.Errorf("/metrics has no dead letter count for %s:\n%s", cause, metrics.Body)
		}
	}
}

func TestRetriesExhaustedAreDeadLettered(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.MaxDeliver = 2; c.ProviderFailureRate = 1 })
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 999, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	h.drained()
	dl, err := h.svc.Payments.DeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 1 || !strings.Contains(dl[0].Reason, "after 2 deliveries") || dl[0].EventType != "order.created" {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	if h.outboxCount(o.OrderID) != 0 {
		t.Fatal("a result was emitted for a charge that never happened")
	}
}

// TestHostileOrderEventsAreDeadLetteredOnce sends order events that can never
// be charged or cancelled: each must be recorded as a dead letter with its
// reason and terminated on its first delivery, with nothing claimed.
func TestHostileOrderEventsAreDeadLetteredOnce(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	publish := func(typ, eventID, data string, edit func(nats.Header)) {
		t.Helper()
		env, err := event.New(typ, "/shanhai/order", "o", nil)
		if err != nil {
			t.Fatal(err)
		}
		if eventID != "" {
			env.ID = eventID
		}
		hdr := svctest.Headers(env, nil)
		if edit != nil {
			edit(hdr)
		}
		h.publishRaw(hdr, []byte(data))
	}
	var orders []string
	order := func(userID string, total int64, currency string) string {
		id := uuid.NewString()
		orders = append(orders, id)
		b, err := json.Marshal(orderEvent{OrderID: id, UserID: userID, TotalCents: total, Currency: currency})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	hostile := []struct {
		typ, eventID, data string
		edit               func(nats.Header)
	}{
		{"order.created", "", order("alice", 100, "EUR"), func(hd nats.Header) { hd.Set("ce_specversion", "2.0") }},
		{"order.created", "", order("alice", 100, "EUR"), func(hd nats.Header) { hd.Set("content-type", "text/plain") }},
		{"order.created", "", `{"order_id":`, nil},
		{"order.created", "", `{"order_id":"o","total_cents":"100"}`, nil},
		{"order.created", "", `null`, nil},
		{"order.created", "", `{}`, nil},
		{"order.created", "", order("alice", -500, "EUR"), nil},
		{"order.created", "", order("", 100, "EUR"), nil},
		{"order.created", "", order("alice", 100, "eur"), nil},
		{"order.created", "", order("alice", 100, "\x00\x00\x00"), nil},
		{"order.created", "", order("al\x00ice", 100, "EUR"), nil},
		{"order.created", "", `{"order_id":"\u0000","user_id":"alice","total_cents":100,"currency":"EUR"}`, nil},
		{"order.created", "evt-\xff\xfe", `{"order_id":7}`, nil},
		{"order.cancelled", "", `[]`, nil},
		{"order.cancelled", "", order("alice", 0, "EUR"), nil},
		{"order.cancelled", "", order("alice\x00", 100, "EUR"), nil},
	}
	for _, m := range hostile {
		publish(m.typ, m.eventID, m.data, m.edit)
	}
	h.drained()

	c, err := h.stream.JS.Consumer(ctx, h.names.Stream, h.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != info.Delivered.Stream {
		t.Errorf("%d deliveries of %d messages: an event that can never be handled was retried", info.Delivered.Consumer, info.Delivered.Stream)
	}
	dl, err := h.svc.Payments.DeadLetters(ctx, 100)
	if err != nil || len(dl) != len(hostile) {
		t.Fatalf("%d dead letters for %d hostile events (%v): %+v", len(dl), len(hostile), err, dl)
	}
	for _, d := range dl {
		if d.Reason == "" || strings.Contains(d.Reason, "retries_exhausted") || strings.Contains(d.Reason, "after ") {
			t.Errorf("dead letter %s has no first-delivery reason: %q", d.EventID, d.Reason)
		}
	}
	for _, id := range orders {
		if rows := h.payments(id); len(rows) != 0 {
			t.Errorf("order %s was claimed: %+v", id, rows)
		}
	}
	if h.svc.Provider.Charges() != 0 {
		t.Error("a hostile event reached the provider")
	}
}

// TestOrderEventsNotMatchingThePaymentAreDeadLettered: an order.cancelled or
// a second order.created for a charged order, naming another user or total,
// is dead-lettered; the charge stands and nothing is refunded.
func TestOrderEventsNotMatchingThePaymentAreDeadLettered(t *testing.T) {
	h := newHarness(t, nil)
	o := orderEvent{OrderID: uuid.NewString(), UserID: "alice", TotalCents: 700, Currency: "EUR"}
	h.publishOrder(o, "", nil)
	h.drained()
	h.publishCancel(orderEvent{OrderID: o.OrderID, UserID: "mallory", TotalCents: o.TotalCents, Currency: o.Currency}, "")
	h.publishEvent("order.created", orderEvent{OrderID: o.OrderID, UserID: o.UserID, TotalCents: 1, Currency: o.Currency}, "", nil)
	h.drained()
	dl, err := h.svc.Payments.DeadLetters(context.Background(), 10)
	if err != nil || len(dl) != 2 || !strings.Contains(dl[0].Reason+dl[1].Reason, `"mallory"`) {
		t.Fatalf("dead letters = %+v, %v", dl, err)
	}
	if rows := h.payments(o.OrderID); len(rows) != 1 || rows[0].Status != "SUCCEEDED" || rows[0].UserID != "alice" {
		t.Fatalf("payments = %+v", rows)
	}
	if n := h.outboxCount(o.OrderID); n != 1 {
		t.Fatalf("%d result events, want the one payment.succeeded", n)
	}
}
