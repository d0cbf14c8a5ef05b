package order_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

var products = catalog.Index([]catalog.Product{
	{SKU: "TEA-1", Name: "Tea", PriceCents: 1250, Currency: "EUR"},
	{SKU: "CUP-1", Name: "Cup", PriceCents: 800, Currency: "EUR"},
	{SKU: "USD-1", Name: "Import", PriceCents: 100, Currency: "USD"},
})

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func TestNewPricesFromCatalogue(t *testing.T) {
	o, err := order.New("o1", "u1", []order.Requested{{SKU: "TEA-1", Quantity: 2}, {SKU: "CUP-1", Quantity: 3}}, products, now)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := o.TotalCents(), int64(2*1250+3*800); got != want {
		t.Errorf("total = %d, want %d", got, want)
	}
	if o.Status() != order.Pending || o.Currency() != "EUR" {
		t.Errorf("status %s currency %s", o.Status(), o.Currency())
	}
	ev := o.Events()
	if len(ev) != 1 || ev[0].EventType() != "order.created" || ev[0].OrderID() != "o1" {
		t.Fatalf("events = %#v", ev)
	}
}

func TestNewRejects(t *testing.T) {
	many := make([]order.Requested, order.MaxLines+1)
	for i := range many {
		many[i] = order.Requested{SKU: "TEA-1", Quantity: 1}
	}
	tests := []struct {
		name  string
		req   []order.Requested
		field string
	}{
		{"empty", nil, "items"},
		{"too many lines", many, "items"},
		{"unknown sku", []order.Requested{{SKU: "TEA-1", Quantity: 1}, {SKU: "NOPE", Quantity: 1}}, "items[1].sku"},
		{"missing sku", []order.Requested{{Quantity: 1}}, "items[0].sku"},
		{"zero quantity", []order.Requested{{SKU: "TEA-1", Quantity: 0}}, "items[0].quantity"},
		{"quantity over max", []order.Requested{{SKU: "TEA-1", Quantity: order.MaxQuantity + 1}}, "items[0].quantity"},
		{"negative quantity", []order.Requested{{SKU: "TEA-1", Quantity: -5}}, "items[0].quantity"},
		{"duplicate sku", []order.Requested{{SKU: "TEA-1", Quantity: 1}, {SKU: "TEA-1", Quantity: 1}}, "items[1].sku"},
		{"mixed currency", []order.Requested{{SKU: "TEA-1", Quantity: 1}, {SKU: "USD-1", Quantity: 1}}, "items[1].sku"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := order.New("o", "u", tt.req, products, now)
			var verr *order.ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			for _, f := range verr.Fields {
				if f.Field == tt.field {
					return
				}
			}
			t.Errorf("fields %+v do not name %q", verr.Fields, tt.field)
		})
	}
}

func TestQuantityBoundsAccepted(t *testing.T) {
	for _, q := range []int{order.MinQuantity, order.MaxQuantity} {
		if _, err := order.New("o", "u", []order.Requested{{SKU: "TEA-1", Quantity: q}}, products, now); err != nil {
			t.Errorf("quantity %d: %v", q, err)
		}
	}
}

func pending(t *testing.T) *order.Order {
	t.Helper()
	o, err := order.New("o1", "u1", []order.Requested{{SKU: "TEA-1", Quantity: 1}}, products, now)
	if err != nil {
		t.Fatal(err)
	}
	return order.FromSnapshot(o.Snapshot()) // drop the creation event
}

func TestTransitions(t *testing.T) {
	ok := order.PaymentOutcome{PaymentID: "p1", Succeeded: true}
	bad := order.PaymentOutcome{PaymentID: "p1", Reason: "declined"}
	tests := []struct {
		name    string
		steps   func(o *order.Order) []bool
		want    order.Status
		changes []bool
	}{
		{"pay", func(o *order.Order) []bool { return []bool{o.ApplyPayment(ok, now)} }, order.Paid, []bool{true}},
		{"fail", func(o *order.Order) []bool { return []bool{o.ApplyPayment(bad, now)} }, order.Failed, []bool{true}},
		{"late failure after paid", func(o *order.Order) []bool {
			return []bool{o.ApplyPayment(ok, now), o.ApplyPayment(bad, now)}
		}, order.Paid, []bool{true, false}},
		{"late success after failed", func(o *order.Order) []bool {
			return []bool{o.ApplyPayment(bad, now), o.ApplyPayment(ok, now)}
		}, order.Failed, []bool{true, false}},
		{"payment after cancel", func(o *order.Order) []bool {
			if err := o.Cancel(now); err != nil {
				t.Fatal(err)
			}
			return []bool{o.ApplyPayment(ok, now), o.ApplyPayment(bad, now)}
		}, order.Cancelled, []bool{false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := pending(t)
			got := tt.steps(o)
			if o.Status() != tt.want {
				t.Errorf("status = %s, want %s", o.Status(), tt.want)
			}
			for i := range got {
				if got[i] != tt.changes[i] {
					t.Errorf("step %d changed = %v, want %v", i, got[i], tt.changes[i])
				}
			}
		})
	}
}

// TestContradicts: only the opposite of the result that settled an order
// contradicts it; PENDING is not settled, and a CANCELLED order may still
// see a success (payment voids or refunds it).
func TestContradicts(t *testing.T) {
	ok := order.PaymentOutcome{PaymentID: "p1", Succeeded: true}
	bad := order.PaymentOutcome{PaymentID: "p1", Reason: "declined"}
	settle := map[order.Status]func(*order.Order){
		order.Pending:   func(*order.Order) {},
		order.Paid:      func(o *order.Order) { o.ApplyPayment(ok, now) },
		order.Failed:    func(o *order.Order) { o.ApplyPayment(bad, now) },
		order.Cancelled: func(o *order.Order) { _ = o.Cancel(now) },
	}
	for st, want := range map[order.Status][2]bool{ // success, failure
		order.Pending: {false, false}, order.Paid: {false, true}, order.Failed: {true, false}, order.Cancelled: {false, false},
	} {
		o := pending(t)
		settle[st](o)
		if o.Status() != st {
			t.Fatalf("status = %s, want %s", o.Status(), st)
		}
		if got := [2]bool{o.Contradicts(ok), o.Contradicts(bad)}; got != want {
			t.Errorf("%s: Contradicts(success, failure) = %v, want %v", st, got, want)
		}
	}
}

func TestCancel(t *testing.T) {
	o := pending(t)
	if err := o.Cancel(now); err != nil {
		t.Fatal(err)
	}
	if err := o.Cancel(now); err != nil {
		t.Fatalf("second cancel: %v", err)
	}
	if ev := o.Events(); len(ev) != 1 || ev[0].EventType() != "order.cancelled" {
		t.Fatalf("events = %v, want one order.cancelled", ev)
	}
	paid := pending(t)
	paid.ApplyPayment(order.PaymentOutcome{Succeeded: true}, now)
	err := paid.Cancel(now)
	if !errors.Is(err, order.ErrNotPending) || !strings.Contains(err.Error(), "PAID") {
		t.Fatalf("cancel paid: %v", err)
	}
	if paid.Status() != order.Paid {
		t.Fatalf("status = %s", paid.Status())
	}
}

// TestTooManyLinesIsOneError: a request over MaxLines is refused for its
// length alone. Validating every line as well made the work and the 422 body
// grow with whatever fits in the body limit: 1 MiB of `{},` (349 518 empty
// lines) was answered with two field errors per line, a 45.9 MB problem.
func TestTooManyLinesIsOneError(t *testing.T) {
	_, err := order.New("o1", "u1", make([]order.Requested, 10_000), products, now)
	var verr *order.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	if len(verr.Fields) != 1 || verr.Fields[0].Field != "items" {
		t.Fatalf("%d field errors (first %+v) for a request over %d lines, want the one for items", len(verr.Fields), verr.Fields[0], order.MaxLines)
	}
}

// TestSecondChargeContradicts: a success from another payment than the one
// that paid the order is a second charge. Payment keeps one payment per order
// (UNIQUE order_id), so within the saga it never happens; when it does (a
// second payment database answering the same orders, a forged result) money
// was taken twice, and it must reach an operator like the opposite result
// does, not pass as a quiet replay of the settling one.
func TestSecondChargeContradicts(t *testing.T) {
	o := pending(t)
	o.ApplyPayment(order.PaymentOutcome{PaymentID: "p1", Succeeded: true}, now)
	if o.Contradicts(order.PaymentOutcome{PaymentID: "p1", Succeeded: true}) {
		t.Error("the settling success again (another event id) contradicts")
	}
	if !o.Contradicts(order.PaymentOutcome{PaymentID: "p2", Succeeded: true}) {
		t.Error("a success of another payment for a PAID order does not contradict it: money taken twice goes unreported")
	}
	if o.ApplyPayment(order.PaymentOutcome{PaymentID: "p2", Succeeded: true}, now) || o.PaymentID() != "p1" {
		t.Errorf("the second charge changed the order: payment %s", o.PaymentID())
	}
}

// TestUnknownSKUIsNotEchoedWhole: the 422 for an unknown SKU names it, but
// only its start. Quoting the whole value made the problem larger than the
// request: %q spells some runes in ten bytes, so a 1 MiB body of one unknown
// SKU was answered with a 2.6 MB problem.
func TestUnknownSKUIsNotEchoedWhole(t *testing.T) {
	sku := strings.Repeat("\U000F0000", 20_000) // 80 kB
	_, err := order.New("o1", "u1", []order.Requested{{SKU: sku, Quantity: 1}, {SKU: "NOPE", Quantity: 1}}, products, now)
	var verr *order.ValidationError
	if !errors.As(err, &verr) || len(verr.Fields) != 2 {
		t.Fatalf("err = %v, want two field errors", err)
	}
	if d := verr.Fields[0].Detail; len(d) > 256 {
		t.Errorf("detail of %d bytes for an unknown SKU of %d bytes: %.80s...", len(d), len(sku), d)
	}
	if d := verr.Fields[1].Detail; d != `unknown product "NOPE"` {
		t.Errorf("short unknown SKU: detail %q, want it named whole", d)
	}
}

// TestTotalThatOverflowsIsRefused: quantity × price and the sum of the
// lines are int64 cents. A catalogue price big enough (a migration adding a
// product priced in a currency of tiny units, or a typo of a few digits)
// wrapped the total past math.MaxInt64 into a negative amount, which
// order.created then asked payment to charge.
func TestTotalThatOverflowsIsRefused(t *testing.T) {
	huge := catalog.Index([]catalog.Product{
		{SKU: "BIG-1", Name: "Big", PriceCents: math.MaxInt64 / 60, Currency: "EUR"},
		{SKU: "BIG-2", Name: "Big too", PriceCents: math.MaxInt64 / 60, Currency: "EUR"},
	})
	for _, req := range [][]order.Requested{
		{{SKU: "BIG-1", Quantity: 100}},                              // one line's product overflows
		{{SKU: "BIG-1", Quantity: 40}, {SKU: "BIG-2", Quantity: 40}}, // each line fits, their sum does not
	} {
		o, err := order.New("o", "u", req, huge, now)
		var verr *order.ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("%v: total %d, err %v; want a *ValidationError", req, o.TotalCents(), err)
		}
		if len(verr.Fields) != 1 || verr.Fields[0].Field != "items" {
			t.Errorf("%v: fields %+v, want one naming items", req, verr.Fields)
		}
	}
	// The largest total that fits is still an order.
	o, err := order.New("o", "u", []order.Requested{{SKU: "BIG-1", Quantity: 60}}, huge, now)
	if err != nil || o.TotalCents() != 60*(math.MaxInt64/60) {
		t.Fatalf("60 × MaxInt64/60: %v", err)
	}
}

// TestExpire: an order left PENDING since before the cutoff is cancelled
// with the event a user's cancel records and reason PaymentTimeout; one
// placed at or after the cutoff, or one that left PENDING, is not. A late
// payment result then changes nothing, as after a user's cancel.
func TestExpire(t *testing.T) {
	o := pending(t) // placed at now
	if o.Expire(now, now.Add(time.Hour)) || o.Status() != order.Pending || len(o.Events()) != 0 {
		t.Fatalf("an order placed at the cutoff was expired: %s, %v", o.Status(), o.Events())
	}
	later := now.Add(10 * time.Minute)
	if !o.Expire(now.Add(time.Microsecond), later) {
		t.Fatal("an order placed before the cutoff was not expired")
	}
	s := o.Snapshot()
	if s.Status != order.Cancelled || s.CancelReason != order.PaymentTimeout || !s.UpdatedAt.Equal(later) {
		t.Fatalf("expired order = %+v", s)
	}
	ev := o.Events()
	if len(ev) != 1 || ev[0].EventType() != "order.cancelled" || ev[0].OrderID() != "o1" {
		t.Fatalf("events = %v, want one order.cancelled", ev)
	}
	if o.Expire(later, later) || len(o.Events()) != 1 {
		t.Fatal("a cancelled order was expired again")
	}
	if o.ApplyPayment(order.PaymentOutcome{PaymentID: "p1", Succeeded: true}, later) || o.Status() != order.Cancelled {
		t.Fatalf("a late success moved an expired order to %s", o.Status())
	}
	// A user's cancel of an expired order is the no-op of a repeated cancel:
	// the reason stays the first one.
	if err := o.Cancel(later); err != nil || o.CancelReason() != order.PaymentTimeout || len(o.Events()) != 1 {
		t.Fatalf("cancel after expiry: %v, reason %s, %d events", err, o.CancelReason(), len(o.Events()))
	}
	for _, settle := range []order.PaymentOutcome{{PaymentID: "p1", Succeeded: true}, {PaymentID: "p1", Reason: "declined"}} {
		o := pending(t)
		o.ApplyPayment(settle, now)
		if o.Expire(later, later) || o.Status() == order.Cancelled || len(o.Events()) != 0 {
			t.Fatalf("a settled order was expired: %s", o.Status())
		}
	}
	user := pending(t)
	if err := user.Cancel(now); err != nil || user.CancelReason() != order.CancelledByUser {
		t.Fatalf("user cancel: %v, reason %q", err, user.CancelReason())
	}
}
