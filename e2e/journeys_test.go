package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/e2e/internal/api"
	"github.com/shanhai-dev/shanhai/e2e/internal/otlpsink"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return c
}

// cheapItems picks two catalogue products whose total stays under the
// payment service's default decline limit.
func cheapItems(t *testing.T, e *env) []api.Item {
	t.Helper()
	r, err := e.cli.Products(ctx(t), e.token)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("list products: %v %v", r, err)
	}
	var body struct{ Products []api.Product }
	if err := r.JSON(&body); err != nil {
		t.Fatal(err)
	}
	var items []api.Item
	for _, p := range body.Products {
		if p.PriceCents > 0 && p.PriceCents < 10000 && len(items) < 2 {
			items = append(items, api.Item{SKU: p.SKU, Quantity: len(items) + 1})
		}
	}
	if len(items) < 2 {
		t.Fatalf("catalogue has fewer than two products under 100.00: %v", r)
	}
	return items
}

func createOrder(t *testing.T, e *env, items []api.Item, h http.Header) (api.Order, api.Response, string) {
	t.Helper()
	key := "e2e-" + randomHex(8)
	r, err := e.cli.CreateOrder(ctx(t), e.token, key, items, h)
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("create order: %v %v", r, err)
	}
	var o api.Order
	if err := r.JSON(&o); err != nil || o.ID == "" {
		t.Fatalf("created order %v: %v", r, err)
	}
	return o, r, key
}

// waitStatus polls the order through the gateway until it reaches want or d
// passes, and returns the last view.
func waitStatus(t *testing.T, e *env, id, want string, d time.Duration) (api.Order, bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	var o api.Order
	for {
		r, err := e.cli.GetOrder(ctx(t), e.token, id)
		if err != nil || r.Status != http.StatusOK {
			t.Fatalf("get order %s: %v %v", id, r, err)
		}
		if err := r.JSON(&o); err != nil {
			t.Fatal(err)
		}
		if o.Status == want {
			return o, true
		}
		if time.Now().After(deadline) {
			return o, false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func payments(t *testing.T, e *env, orderID string) []api.Payment {
	t.Helper()
	r, err := e.cli.PaymentsOf(ctx(t), e.token, orderID)
	if err != nil || r.Status != http.StatusOK {
		t.Fatalf("list payments of %s: %v %v", orderID, r, err)
	}
	var body struct{ Payments []api.Payment }
	if err := r.JSON(&body); err != nil {
		t.Fatal(err)
	}
	return body.Payments
}

func happyPath(t *testing.T, e *env) {
	items := cheapItems(t, e)
	traceID, clientSpan := randomHex(16), randomHex(8)
	h := http.Header{"Traceparent": {"00-" + traceID + "-" + clientSpan + "-01"}}
	created := time.Now()
	o, first, key := createOrder(t, e, items, h)
	if o.Status != "PENDING" && o.Status != "PAID" {
		t.Fatalf("new order status %q, want PENDING", o.Status)
	}

	// The same key and items again: the first answer, marked as a replay,
	// and still one order.
	again, err := e.cli.CreateOrder(ctx(t), e.token, key, items, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Status != first.Status || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("retry with the same Idempotency-Key answered %v, first answer was %v", again, first)
	}
	if again.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry lacks Idempotent-Replayed: true (headers %v)", again.Header)
	}

	paid, ok := waitStatus(t, e, o.ID, "PAID", 10*time.Second)
	if !ok {
		t.Fatalf("order %s is %s %s after the saga's 10 s", o.ID, paid.Status, time.Since(created).Round(time.Millisecond))
	}
	t.Logf("order %s PAID %s after creation", o.ID, time.Since(created).Round(time.Millisecond))

	ps := payments(t, e, o.ID)
	if len(ps) != 1 || ps[0].Status != "SUCCEEDED" || ps[0].AmountCents != o.TotalCents || ps[0].ID != paid.PaymentID {
		t.Fatalf("payments of order %s (total %d, payment_id %q): %+v, want one SUCCEEDED of the total", o.ID, o.TotalCents, paid.PaymentID, ps)
	}

	for _, want := range []struct{ topic, ceType string }{
		{archiveTopics[0], "order.created"}, {archiveTopics[1], "payment.succeeded"},
	} {
		ev, ok := e.arch.find(o.ID, want.ceType, 30*time.Second)
		if !ok {
			t.Errorf("no %s of order %s archived in %s within 30 s", want.ceType, o.ID, want.topic)
			continue
		}
		if !strings.HasPrefix(ev.Topic, want.topic) || ev.Props["ce_id"] == "" || ev.Props["__kafka_offset"] == "" {
			t.Errorf("archived %s: topic %s, properties %v", want.ceType, ev.Topic, ev.Props)
		}
	}

	checkTrace(t, e, traceID, clientSpan)
}

// checkTrace waits until the client's trace holds the whole saga: the
// gateway, the order service's request and outbox, the bridge, the payment
// consumer and the order service's consumer of the result, every span's
// parent being another span of the trace (or the test's own client span).
func checkTrace(t *testing.T, e *env, traceID, clientSpan string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var spans []otlpsink.Span
	var problem string
	for {
		spans = e.sink.Trace(traceID)
		problem = traceProblem(spans, clientSpan)
		if problem == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if problem != "" {
		var b strings.Builder
		for _, s := range spans {
			fmt.Fprintf(&b, "  %s %-8s %-9s %q parent=%s\n", s.SpanID, s.Service, s.Kind, s.Name, s.ParentID)
		}
		t.Fatalf("trace %s (%d spans of %d received): %s\n%s", traceID, len(spans), e.sink.Len(), problem, b.String())
	}
	// The timeline shows where the saga's time goes (the load report's
	// "what limits it" starts here).
	slices.SortFunc(spans, func(a, b otlpsink.Span) int { return a.Start.Compare(b.Start) })
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "  +%7.1f ms %7.1f ms  %-8s %-9s %s\n", ms(s.Start.Sub(spans[0].Start)), ms(s.End.Sub(s.Start)),
			s.Service, strings.TrimPrefix(s.Kind, "SPAN_KIND_"), s.Name)
	}
	t.Logf("trace %s, %d spans:\n%s", traceID, len(spans), b.String())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func traceProblem(spans []otlpsink.Span, clientSpan string) string {
	ids := map[string]bool{clientSpan: true}
	for _, s := range spans {
		ids[s.SpanID] = true
	}
	for _, s := range spans {
		if !ids[s.ParentID] {
			return fmt.Sprintf("span %q of %s has parent %q outside the trace", s.Name, s.Service, s.ParentID)
		}
	}
	has := func(service, kind string) bool {
		return slices.ContainsFunc(spans, func(s otlpsink.Span) bool {
			return s.Service == service && (kind == "" || s.Kind == kind)
		})
	}
	for _, want := range []struct{ service, kind string }{
		{"gateway", "SPAN_KIND_SERVER"}, {"order", "SPAN_KIND_SERVER"}, {"order", "SPAN_KIND_PRODUCER"},
		{"bridge", ""}, {"payment", "SPAN_KIND_CONSUMER"}, {"payment", "SPAN_KIND_PRODUCER"}, {"order", "SPAN_KIND_CONSUMER"},
	} {
		if !has(want.service, want.kind) {
			return fmt.Sprintf("no %s span of %s", strings.ToLower(strings.TrimPrefix(want.kind, "SPAN_KIND_")), want.service)
		}
	}
	return ""
}

func declined(t *testing.T, e *env) {
	// Two cameras cross the default decline limit of 1000.00.
	o, _, _ := createOrder(t, e, []api.Item{{SKU: "CAM-1", Quantity: 2}}, nil)
	failed, ok := waitStatus(t, e, o.ID, "FAILED", 10*time.Second)
	if !ok {
		t.Fatalf("declined order %s is %s, want FAILED within 10 s", o.ID, failed.Status)
	}
	if failed.FailureReason == "" {
		t.Errorf("FAILED order %s has no failure_reason", o.ID)
	}
	ps := payments(t, e, o.ID)
	if len(ps) != 1 || ps[0].Status != "FAILED" || ps[0].Reason == "" {
		t.Fatalf("payments of declined order %s: %+v, want one FAILED with a reason", o.ID, ps)
	}
}

func providerFault(t *testing.T, e *env) {
	heal := faultProvider(t, e)

	items := cheapItems(t, e)
	var ids []string
	for range 5 {
		o, _, _ := createOrder(t, e, items, nil)
		ids = append(ids, o.ID)
	}
	// Each order has been tried (a PENDING payment claimed) and still waits.
	for _, id := range ids {
		deadline := time.Now().Add(20 * time.Second)
		for {
			ps := payments(t, e, id)
			if len(ps) == 1 && ps[0].Status == "PENDING" {
				break
			}
			if len(ps) > 0 && ps[0].Status != "PENDING" {
				t.Fatalf("order %s was charged while the provider faults: %+v", id, ps)
			}
			if time.Now().After(deadline) {
				t.Fatalf("order %s: no charge attempt within 20 s (payments %+v)", id, ps)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if o, _ := waitStatus(t, e, id, "PENDING", 0); o.Status != "PENDING" {
			t.Fatalf("order %s is %s while the provider faults, want PENDING", id, o.Status)
		}
	}

	heal()
	// Redeliveries back off up to 16 s each; a minute covers several.
	for _, id := range ids {
		if o, ok := waitStatus(t, e, id, "PAID", 60*time.Second); !ok {
			t.Errorf("order %s is %s a minute after the fault cleared, want PAID", id, o.Status)
		}
	}
}

// faultProvider makes every charge and refund fail through the dynamic config
// in etcd and returns heal, which clears the fault; the test's cleanup heals
// too, so a failing test does not leave the next one faulted.
func faultProvider(t *testing.T, e *env) (heal func()) {
	t.Helper()
	settings := map[string]any{"latency_median_ms": 20, "latency_p99_ms": 120, "failure_rate": 1.0, "decline_above_cents": 100000}
	if err := e.st.SetPayment(ctx(t), settings); err != nil {
		t.Fatal(err)
	}
	healed := false
	heal = func() {
		if healed {
			return
		}
		settings["failure_rate"] = 0.0
		if err := e.st.SetPayment(context.Background(), settings); err != nil {
			t.Errorf("clear the provider fault: %v", err)
			return
		}
		healed = true
	}
	t.Cleanup(heal)
	// The watch applies the document within milliseconds; the pause keeps
	// the first order from racing it.
	time.Sleep(time.Second)
	return heal
}
