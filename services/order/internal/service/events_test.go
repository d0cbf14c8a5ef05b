package service_test

import (
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

func TestOrderCreatedLandsOnKafkaWithCloudEventsAndTrace(t *testing.T) {
	h := newHarness(t)
	tail := svctest.TailKafka(t, adapters.Topic)
	traceID := strings.ReplaceAll(uuid.NewString(), "-", "")
	r := h.do("POST", "/api/v1/orders", "alice", `{"items":[{"sku":"MAP-SCROLL","quantity":2}]}`,
		"Idempotency-Key", "k1", "traceparent", "00-"+traceID+"-1111111111111111-01")
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	var o orderView
	r.json(t, &o)

	m := tail.Find(t, o.ID, 20*time.Second)
	hd := svctest.HeaderMap(m.Headers)
	for k, want := range map[string]string{
		"ce_specversion": "1.0", "ce_type": "order.created", "ce_source": adapters.Source, "ce_subject": o.ID,
		"content-type": "application/json",
	} {
		if hd[k] != want {
			t.Errorf("header %s = %q, want %q", k, hd[k], want)
		}
	}
	if hd["ce_id"] == "" {
		t.Error("no ce_id")
	}
	if _, err := time.Parse(time.RFC3339, hd["ce_time"]); err != nil {
		t.Errorf("ce_time %q: %v", hd["ce_time"], err)
	}
	if tp := hd["traceparent"]; !strings.HasPrefix(tp, "00-"+traceID+"-") {
		t.Errorf("traceparent %q does not continue trace %s", tp, traceID)
	}
	env, err := event.FromHeaders(hd, m.Value)
	if err != nil {
		t.Fatal(err)
	}
	var data adapters.OrderCreatedData
	if err := env.Decode(&data); err != nil {
		t.Fatal(err)
	}
	if data.OrderID != o.ID || data.UserID != "alice" || data.TotalCents != 9600 || data.Currency != "EUR" ||
		len(data.Items) != 1 || data.Items[0].UnitPriceCents != 4800 || data.Items[0].Quantity != 2 {
		t.Fatalf("payload = %+v", data)
	}
}

// publishResult publishes a payment result to JetStream the way the bridge
// does: the Kafka headers (CloudEvents, trace context) as NATS headers plus
// the kafka_* ones, with a fresh Nats-Msg-Id per publish. It charges alice
// the order's total, as payment does.
func (h *harness) publishResult(t *testing.T, typ, eventID, orderID, reason string, parent *trace.SpanContext) {
	t.Helper()
	var total int64
	if err := h.svc.DB.Raw("SELECT total_cents FROM orders WHERE id = ?", orderID).Scan(&total).Error; err != nil {
		t.Fatal(err)
	}
	env, err := event.New(typ, "/shanhai/payment", orderID, adapters.PaymentResultData{
		PaymentID: "pay-" + orderID, OrderID: orderID, UserID: "alice", AmountCents: total, Reason: reason,
	})
	if err != nil {
		t.Fatal(err)
	}
	env.ID = eventID
	h.stream.Publish(t, h.names.Subject, "shanhai.payments", orderID, svctest.Headers(env, parent), env.Data)
}

// termination is a consumer's MSG_TERMINATED advisory: the stream sequence
// of the message terminated and the reason given.
type termination struct {
	StreamSeq uint64 `json:"stream_seq"`
	Reason    string `json:"reason"`
}

// terminations subscribes to the consumer's termination advisories; the
// returned function waits for n of them and returns them.
func (h *harness) terminations(t *testing.T) func(n int) []termination {
	t.Helper()
	sub, err := h.stream.JS.Conn().SubscribeSync("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED." + h.names.Stream + "." + h.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return func(n int) []termination {
		t.Helper()
		var advs []termination
		for range n {
			m, err := sub.NextMsg(20 * time.Second)
			if err != nil {
				t.Fatalf("%d of %d termination advisories: %v", len(advs), n, err)
			}
			var adv termination
			if err := json.Unmarshal(m.Data, &adv); err != nil {
				t.Fatalf("advisory %s: %v", m.Data, err)
			}
			advs = append(advs, adv)
		}
		return advs
	}
}

// everyTerminated waits, through terminated, until n distinct messages have
// been terminated, and returns the advisories read. It counts messages, not
// deliveries: a message can be delivered again while it waits in its lane,
// when a keep-alive comes late on a loaded machine (InProgress every 500 ms
// against a first ack wait of 1 s: stream.Keeper's trade-off), and then be
// terminated twice. A termination that failed sends no advisory, and a result
// that was retried instead is first redelivered seconds later: either one
// fails the wait.
func everyTerminated(terminated func(n int) []termination, n int) []termination {
	var advs []termination
	for seqs := map[uint64]bool{}; len(seqs) < n; {
		a := terminated(1)[0]
		seqs[a.StreamSeq] = true
		advs = append(advs, a)
	}
	return advs
}

// drained waits until the consumer has settled every message in the stream.
func (h *harness) drained(t *testing.T) { h.stream.Drained(t, h.names.Durable, 20*time.Second) }

func TestPaymentResultsApplyOnceWhateverTheOrder(t *testing.T) {
	h := newHarness(t)
	item := `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`
	paid, failed, cancelled := h.createOrder("alice", item), h.createOrder("alice", item), h.createOrder("alice", item)
	h.do("POST", "/api/v1/orders/"+cancelled.ID+"/cancel", "alice", "")

	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{7, 7, 7, 7, 7, 7, 7, 7},
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	// paid: success, the same event redelivered, then a late failure (a
	// contradiction, which never moves the order).
	h.publishResult(t, "payment.succeeded", "e1", paid.ID, "", &parent)
	h.publishResult(t, "payment.succeeded", "e1", paid.ID, "", nil)
	h.publishResult(t, "payment.failed", "e2", paid.ID, "card_declined", nil)
	// failed: failure, then a success that arrives later (reordered; also a
	// contradiction).
	h.publishResult(t, "payment.failed", "e3", failed.ID, "amount_over_limit", nil)
	h.publishResult(t, "payment.succeeded", "e4", failed.ID, "", nil)
	// cancelled: a payment result never revives it.
	h.publishResult(t, "payment.succeeded", "e5", cancelled.ID, "", nil)
	// An unknown order and another event type are settled, not retried forever.
	h.publishResult(t, "payment.succeeded", "e6", uuid.NewString(), "", nil)
	h.publishResult(t, "payment.refunded", "e7", paid.ID, "", nil)
	// The refund of a cancelled order's charge is informational: it stays CANCELLED.
	h.publishResult(t, "payment.refunded", "e8", cancelled.ID, "order_cancelled", nil)
	h.drained(t)

	if o := h.getOrder("alice", paid.ID); o.Status != "PAID" || o.PaymentID != "pay-"+paid.ID {
		t.Errorf("paid order = %+v", o)
	}
	if o := h.getOrder("alice", failed.ID); o.Status != "FAILED" || o.FailureReason != "amount_over_limit" {
		t.Errorf("failed order = %+v", o)
	}
	if o := h.getOrder("alice", cancelled.ID); o.Status != "CANCELLED" {
		t.Errorf("cancelled order = %+v", o)
	}
	var processed int64
	h.svc.DB.Table("processed_events").Where("consumer = ?", "order").Count(&processed)
	// e7, the refund of a PAID order, is an alarm, recorded so that its
	// redelivery does not alarm again; e8, the saga's own refund, is not.
	if processed != 6 {
		t.Errorf("processed events = %d, want 6 (e1..e5, e1 once, and e7)", processed)
	}

	// The consumer's span continues the trace carried in the NATS headers.
	if !svctest.Continues(spans.Ended(), h.names.Subject+" process", parent) {
		t.Error("no consumer span continues the published trace")
	}
}

// TestHostilePaymentResultsAreTerminatedOnce sends results that can never
// apply: each must be settled on its first delivery (terminated with a
// reason, counted), never retried until JetStream drops it unrecorded, and
// no order may move, least of all on another user's or another sum's result.
func TestHostilePaymentResultsAreTerminatedOnce(t *testing.T) {
	h := newHarness(t)
	item := `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`
	terminated := h.terminations(t)
	sent := 0
	publish := func(typ, eventID, key string, data string, edit func(nats.Header)) {
		t.Helper()
		env, err := event.New(typ, "/shanhai/payment", key, nil)
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
		h.stream.Publish(t, h.names.Subject, "shanhai.payments", key, hdr, []byte(data))
		sent++
	}
	result := func(orderID, userID string, amount int64, paymentID, reason string) string {
		b, err := json.Marshal(adapters.PaymentResultData{PaymentID: paymentID, OrderID: orderID, UserID: userID, AmountCents: amount, Reason: reason})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	// order places one of alice's orders that no result below may move.
	var untouched []string
	order := func() (string, int64) {
		o := h.createOrder("alice", item)
		untouched = append(untouched, o.ID)
		return o.ID, o.TotalCents
	}

	publish("payment.succeeded", "", "", "", func(hd nats.Header) { hd.Del("ce_specversion") })
	id, total := order()
	publish("payment.succeeded", "", "", result(id, "alice", total, "pay-1", ""), func(hd nats.Header) { hd.Set("ce_specversion", "2.0") })
	publish("payment.succeeded", "", "", `{"order_id":`, nil)
	publish("payment.succeeded", "", "", `{"order_id":7}`, nil)
	publish("payment.succeeded", "", "", `null`, nil)
	publish("payment.failed", "", "", `{}`, nil)
	publish("payment.succeeded", "", "", result("not-an-order", "alice", total, "pay-2", ""), nil)
	publish("payment.succeeded", "", "", result("\x00", "alice", total, "pay-3", ""), nil)
	id, total = order()
	publish("payment.succeeded", "", "", result(id, "alice", total, "", ""), nil)
	id, total = order()
	publish("payment.succeeded", "", "", result(id, "alice", total, "pay\x00", ""), nil)
	id, total = order()
	publish("payment.failed", "", "", result(id, "alice", total, "pay-4", "card\x00declined"), nil)
	id, total = order()
	publish("payment.succeeded", "evt-\xff\xfe", id, result(id, "alice", total, "pay-5", ""), nil)
	id, total = order()
	publish("payment.succeeded", "", "", result(id, "alice", -total, "pay-6", ""), nil)
	id, _ = order()
	publish("payment.failed", "", "", result(id, "alice", 0, "pay-7", "card_declined"), nil)
	id, total = order()
	publish("payment.succeeded", "", "", result(id, "alice", total-1, "pay-8", ""), nil)
	id, total = order()
	publish("payment.succeeded", "", "", result(id, "bob", total, "pay-9", ""), nil)
	publish("payment.failed", "", "", result(id, "", total, "pay-10", "card_declined"), nil)
	for _, a := range everyTerminated(terminated, sent) {
		if a.Reason == "" {
			t.Error("a result was terminated without a reason")
		}
	}
	h.drained(t)
	for _, id := range untouched {
		if o := h.getOrder("alice", id); o.Status != "PENDING" || o.PaymentID != "" {
			t.Errorf("order %s moved on a hostile result: %+v", id, o)
		}
	}
	m := h.do("GET", "/metrics", "", "")
	if !slices.ContainsFunc(strings.Split(string(m.Body), "\n"), func(l string) bool {
		return strings.HasPrefix(l, "shanhai_order_payment_events_total{") && strings.Contains(l, `outcome="terminated"`)
	}) {
		t.Errorf("/metrics counts no terminated result:\n%s", m.Body)
	}
}

// TestResultStillFailingOnLastDeliveryIsTerminated: a result whose apply keeps
// failing is terminated with the reason on its last allowed delivery, rather
// than dropped by JetStream with no word of why.
func TestResultStillFailingOnLastDeliveryIsTerminated(t *testing.T) {
	h := newHarness(t, func(o *service.Options) { o.MaxDeliver = 2 })
	o := h.createOrder("alice", `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`)
	terminated := h.terminations(t)
	// Every apply now fails on the database, as during a long outage.
	if err := h.svc.DB.Exec("DROP TABLE processed_events").Error; err != nil {
		t.Fatal(err)
	}
	h.publishResult(t, "payment.succeeded", "e1", o.ID, "", nil)
	if advs := terminated(1); !strings.Contains(advs[0].Reason, "after 2 deliveries") {
		t.Fatalf("terminated because %q", advs[0].Reason)
	}
	h.drained(t)
}

// TestPaymentEventOutcomesTellNoOpsFromChanges counts results on the real
// consumer (PostgreSQL, NATS): the first result of an order moves it and is
// "applied"; a second result for it under another event id (payment's
// replay, or a result after the order was cancelled) is recorded but changes
// nothing, and must not be counted as applied too; a late opposite result is
// counted "contradicts" (TestContradictingPaymentResultIsAnAlarm).
func TestPaymentEventOutcomesTellNoOpsFromChanges(t *testing.T) {
	h := newHarness(t)
	item := `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`
	paid, cancelled := h.createOrder("alice", item), h.createOrder("alice", item)
	if r := h.do("POST", "/api/v1/orders/"+cancelled.ID+"/cancel", "alice", ""); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	before := h.outcomes(t)
	h.publishResult(t, "payment.succeeded", "first-"+paid.ID, paid.ID, "", nil)
	h.drained(t)
	h.publishResult(t, "payment.succeeded", "replay-"+paid.ID, paid.ID, "", nil)
	h.publishResult(t, "payment.failed", "late-"+paid.ID, paid.ID, "card_declined", nil)
	h.publishResult(t, "payment.succeeded", "after-cancel-"+cancelled.ID, cancelled.ID, "", nil)
	h.publishResult(t, "payment.succeeded", "first-"+paid.ID, paid.ID, "", nil) // the same event again
	h.drained(t)

	got := h.outcomesSince(t, before)
	want := map[string]float64{"applied": 1, "unchanged": 2, "contradicts": 1, "duplicate": 1}
	if !maps.Equal(got, want) {
		t.Errorf("payment result outcomes counted %v, want %v", got, want)
	}
	if o := h.getOrder("alice", paid.ID); o.Status != "PAID" {
		t.Errorf("paid order = %+v", o)
	}
}

// TestContradictingPaymentResultIsAnAlarm sends each settled order the
// result opposite to the one that settled it. Payment never does that within
// the saga (services/payment README, "Never a success after a failure"), so a
// success for a FAILED order means money taken for an order the platform
// calls failed, and a failure for a PAID one an order shipped on a charge
// payment disowns: each is logged at ERROR with both sides and counted
// "contradicts". The saga's own late results stay quiet and "unchanged": a
// second copy of the settling result under another event id, and a success
// for a CANCELLED order (payment voids or refunds it, payment.refunded).
func TestContradictingPaymentResultIsAnAlarm(t *testing.T) {
	logs := &testenv.LogBuffer{}
	h := newHarness(t, func(o *service.Options) { o.Logger = telemetry.NewLogger(logs, slog.LevelInfo) })
	item := `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`
	paid, failed, cancelled := h.createOrder("alice", item), h.createOrder("alice", item), h.createOrder("alice", item)
	if r := h.do("POST", "/api/v1/orders/"+cancelled.ID+"/cancel", "alice", ""); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	h.publishResult(t, "payment.succeeded", "first-"+paid.ID, paid.ID, "", nil)
	h.publishResult(t, "payment.failed", "first-"+failed.ID, failed.ID, "card_declined", nil)
	h.drained(t)
	before := h.outcomes(t)
	h.publishResult(t, "payment.succeeded", "replay-"+paid.ID, paid.ID, "", nil)
	h.publishResult(t, "payment.failed", "replay-"+failed.ID, failed.ID, "card_declined", nil)
	h.publishResult(t, "payment.succeeded", "after-cancel-"+cancelled.ID, cancelled.ID, "", nil)
	h.publishResult(t, "payment.failed", "contra-"+paid.ID, paid.ID, "card_declined", nil)
	h.publishResult(t, "payment.succeeded", "contra-"+failed.ID, failed.ID, "", nil)
	h.publishResult(t, "payment.succeeded", "contra-"+failed.ID, failed.ID, "", nil) // redelivered: alarmed once
	h.drained(t)

	got := h.outcomesSince(t, before)
	if want := map[string]float64{"unchanged": 3, "contradicts": 2, "duplicate": 1}; !maps.Equal(got, want) {
		t.Errorf("payment result outcomes counted %v, want %v", got, want)
	}
	if o := h.getOrder("alice", paid.ID); o.Status != "PAID" {
		t.Errorf("paid order = %+v", o)
	}
	if o := h.getOrder("alice", failed.ID); o.Status != "FAILED" || o.FailureReason != "card_declined" {
		t.Errorf("failed order = %+v", o)
	}

	type line struct {
		Level, Msg, OrderID, OrderStatus, PaymentID, PaymentStatus string
	}
	var alarms []line
	for l := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["level"] != "ERROR" {
			continue
		}
		str := func(k string) string { s, _ := rec[k].(string); return s }
		alarms = append(alarms, line{str("level"), str("msg"), str("order_id"), str("order_status"), str("payment_id"), str("payment_status")})
	}
	// The two orders are applied in different lanes, in either order.
	slices.SortFunc(alarms, func(a, b line) int { return strings.Compare(a.OrderStatus, b.OrderStatus) })
	const msg = "payment result contradicts the order's final state"
	want := []line{
		{"ERROR", msg, failed.ID, "FAILED", "pay-" + failed.ID, "SUCCEEDED"},
		{"ERROR", msg, paid.ID, "PAID", "pay-" + paid.ID, "FAILED"},
	}
	if !slices.Equal(alarms, want) {
		t.Errorf("ERROR log lines:\n%+v\nwant\n%+v\nlog:\n%s", alarms, want, logs)
	}
}

// outcomesSince is outcomes less before: what the payment results since
// before was read counted, the outcomes that did not move left out.
func (h *harness) outcomesSince(t *testing.T, before map[string]float64) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	for k, v := range h.outcomes(t) {
		if d := v - before[k]; d != 0 {
			got[k] = d
		}
	}
	return got
}

// errorLines returns the records logs holds at ERROR: the alarms.
func errorLines(t *testing.T, logs *testenv.LogBuffer) []map[string]any {
	t.Helper()
	var alarms []map[string]any
	for l := range strings.Lines(logs.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		if rec["level"] == "ERROR" {
			alarms = append(alarms, rec)
		}
	}
	return alarms
}

// paidAndCancelled starts a harness that logs into logs, with two of
// alice's orders whose charges succeeded: paid, PAID, and cancelled, which
// was CANCELLED first; before is the payment result outcomes counted then.
func paidAndCancelled(t *testing.T) (h *harness, logs *testenv.LogBuffer, paid, cancelled orderView, before map[string]float64) {
	t.Helper()
	logs = &testenv.LogBuffer{}
	h = newHarness(t, func(o *service.Options) { o.Logger = telemetry.NewLogger(logs, slog.LevelInfo) })
	item := `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`
	paid, cancelled = h.createOrder("alice", item), h.createOrder("alice", item)
	if r := h.do("POST", "/api/v1/orders/"+cancelled.ID+"/cancel", "alice", ""); r.Status != http.StatusOK {
		t.Fatalf("cancel: %d %s", r.Status, r.Body)
	}
	h.publishResult(t, "payment.succeeded", "first-"+paid.ID, paid.ID, "", nil)
	h.publishResult(t, "payment.succeeded", "first-"+cancelled.ID, cancelled.ID, "", nil)
	h.drained(t)
	before = h.outcomes(t)
	return h, logs, paid, cancelled, before
}

// outcomes reads shanhai_order_payment_events_total by outcome from /metrics.
func (h *harness) outcomes(t *testing.T) map[string]float64 {
	t.Helper()
	m := h.do("GET", "/metrics", "", "")
	out := map[string]float64{}
	for _, l := range strings.Split(string(m.Body), "\n") {
		if !strings.HasPrefix(l, "shanhai_order_payment_events_total{") {
			continue
		}
		_, rest, _ := strings.Cut(l, `outcome="`)
		outcome, rest, _ := strings.Cut(rest, `"`)
		_, value, _ := strings.Cut(rest, "} ")
		value, _, _ = strings.Cut(value, " ") // an exemplar may follow
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		out[outcome] += v
	}
	return out
}

// TestOversizedHostileResultsAreTerminatedOnce: a result that can never
// apply is terminated, not retried, however large the fields its reason
// quotes. The reason travels in the termination itself (a NATS publish
// bounded by max_payload, 1 MiB on the test server) and in the ERROR log: a
// non-UUID order_id, a NUL reason or another user's user_id of some 100,000
// runes that %q spells out at 10 bytes each made a reason over 1 MiB, the
// termination failed, and the result was delivered again on the back-off
// until JetStream dropped it unrecorded, 255 s later.
func TestOversizedHostileResultsAreTerminatedOnce(t *testing.T) {
	logs := &testenv.LogBuffer{}
	h := newHarness(t, func(o *service.Options) { o.Logger = telemetry.NewLogger(logs, slog.LevelInfo) })
	o := h.createOrder("alice", `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`)
	terminated := h.terminations(t)
	huge := strings.Repeat("\U000F0000", 110_000) // 440 kB as UTF-8; strconv.Quote spells each rune \U000f0000
	for _, d := range []adapters.PaymentResultData{
		{PaymentID: "pay-1", OrderID: huge, UserID: "alice", AmountCents: o.TotalCents},
		{PaymentID: "pay-2", OrderID: o.ID, UserID: "alice", AmountCents: o.TotalCents, Reason: huge + "\x00"},
		{PaymentID: "pay-3", OrderID: o.ID, UserID: huge, AmountCents: o.TotalCents},
	} {
		env, err := event.New("payment.succeeded", "/shanhai/payment", o.ID, d)
		if err != nil {
			t.Fatal(err)
		}
		h.stream.Publish(t, h.names.Subject, "shanhai.payments", o.ID, svctest.Headers(env, nil), env.Data)
	}
	// A termination over max_payload is refused and sends no advisory.
	for _, a := range everyTerminated(terminated, 3) {
		if a.Reason == "" || len(a.Reason) > 4<<10 {
			t.Errorf("terminated with a reason of %d bytes, want some and at most 4 KiB", len(a.Reason))
		}
	}
	h.drained(t)
	if got := h.getOrder("alice", o.ID); got.Status != "PENDING" {
		t.Errorf("order moved on a hostile result: %+v", got)
	}
	for l := range strings.Lines(logs.String()) {
		if len(l) > 16<<10 {
			t.Errorf("a log line of %d bytes: %.200s...", len(l), l)
		}
	}
}

// TestSecondChargeIsAnAlarm: a payment.succeeded from another payment than
// the one that paid the order means it was charged twice (payment keeps one
// payment per order, so only a second payment database or a forged result
// sends one). It changes nothing, like any late result, but is logged at
// ERROR with both payment ids and counted "contradicts"; it was a quiet
// "unchanged", and the second charge reached no one.
func TestSecondChargeIsAnAlarm(t *testing.T) {
	logs := &testenv.LogBuffer{}
	h := newHarness(t, func(o *service.Options) { o.Logger = telemetry.NewLogger(logs, slog.LevelInfo) })
	paid := h.createOrder("alice", `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`)
	h.publishResult(t, "payment.succeeded", "first-"+paid.ID, paid.ID, "", nil)
	h.drained(t)
	before := h.outcomes(t)
	h.publishResult(t, "payment.succeeded", "replay-"+paid.ID, paid.ID, "", nil) // the settling payment again: quiet
	second, err := event.New("payment.succeeded", "/shanhai/payment", paid.ID, adapters.PaymentResultData{
		PaymentID: "pay-second", OrderID: paid.ID, UserID: "alice", AmountCents: paid.TotalCents,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.stream.Publish(t, h.names.Subject, "shanhai.payments", paid.ID, svctest.Headers(second, nil), second.Data)
	h.drained(t)

	got := h.outcomesSince(t, before)
	if want := map[string]float64{"unchanged": 1, "contradicts": 1}; !maps.Equal(got, want) {
		t.Errorf("payment result outcomes counted %v, want %v", got, want)
	}
	if o := h.getOrder("alice", paid.ID); o.Status != "PAID" || o.PaymentID != "pay-"+paid.ID {
		t.Errorf("paid order after a second charge = %+v", o)
	}
	alarms := errorLines(t, logs)
	if len(alarms) != 1 || alarms[0]["order_id"] != paid.ID || alarms[0]["order_payment_id"] != "pay-"+paid.ID ||
		alarms[0]["payment_id"] != "pay-second" || alarms[0]["payment_status"] != "SUCCEEDED" {
		t.Errorf("ERROR log lines %v, want one naming the order, its payment and the second one\nlog:\n%s", alarms, logs)
	}
}

// TestRefundOfAnOrderNotCancelledIsAnAlarm: payment refunds a charge only
// for an order that was cancelled (order.cancelled, sent once the order is
// CANCELLED), so a payment.refunded for a PAID order means one shown paid,
// and shipped, whose money went back. It changes nothing, but is logged at
// ERROR and counted "contradicts"; it was acked as "informational" and told
// no one. The saga's own refund, of a CANCELLED order, stays informational.
func TestRefundOfAnOrderNotCancelledIsAnAlarm(t *testing.T) {
	h, logs, paid, cancelled, before := paidAndCancelled(t)
	h.publishResult(t, "payment.refunded", "refund-"+cancelled.ID, cancelled.ID, "order_cancelled", nil)
	h.publishResult(t, "payment.refunded", "refund-"+paid.ID, paid.ID, "order_cancelled", nil)
	h.drained(t)

	got := h.outcomesSince(t, before)
	if want := map[string]float64{"informational": 1, "contradicts": 1}; !maps.Equal(got, want) {
		t.Errorf("payment result outcomes counted %v, want %v", got, want)
	}
	if o := h.getOrder("alice", paid.ID); o.Status != "PAID" {
		t.Errorf("paid order after a refund = %+v", o)
	}
	alarms := errorLines(t, logs)
	if len(alarms) != 1 || alarms[0]["order_id"] != paid.ID || alarms[0]["order_status"] != "PAID" ||
		alarms[0]["payment_id"] != "pay-"+paid.ID || alarms[0]["payment_status"] != "REFUNDED" {
		t.Errorf("ERROR log lines %v, want one naming the PAID order and the refunded payment\nlog:\n%s", alarms, logs)
	}
}
