package payment_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

var now = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNewRejectsUnchargeable(t *testing.T) {
	tests := []struct {
		name        string
		order, user string
		amount      int64
		currency    string
	}{
		{"no order", "", "u", 100, "EUR"},
		{"no user", "o", "", 100, "EUR"},
		{"zero amount", "o", "u", 0, "EUR"},
		{"negative amount", "o", "u", -1, "EUR"},
		{"bad currency", "o", "u", 100, "EURO"},
		{"lower-case currency", "o", "u", 100, "eur"},
		{"NUL currency", "o", "u", 100, "\x00\x00\x00"},
		{"three-byte currency", "o", "u", 100, "€"},
		{"NUL in order", "o\x00", "u", 100, "EUR"},
		{"invalid UTF-8 user", "o", "\xff", 100, "EUR"},
		{"overlong order", strings.Repeat("o", payment.MaxIDBytes+1), "u", 100, "EUR"},
		{"overlong user", "o", strings.Repeat("u", payment.MaxIDBytes+1), 100, "EUR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := payment.New("p", tt.order, tt.user, tt.amount, tt.currency, now); !errors.Is(err, payment.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestFinishOnce(t *testing.T) {
	p, err := payment.New("p", "o", "u", 100, "EUR", now)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Succeed(now) || p.Status() != payment.Succeeded {
		t.Fatalf("succeed: %s", p.Status())
	}
	if p.Fail("late", now) || p.Status() != payment.Succeeded {
		t.Fatalf("a second answer changed a final payment: %s", p.Status())
	}
	ev := p.Events()
	if len(ev) != 1 || ev[0].EventType() != "payment.succeeded" || ev[0].PaymentSnapshot().OrderID != "o" {
		t.Fatalf("events = %#v", ev)
	}
}

func TestRules(t *testing.T) {
	mk := func(amount int64, cur string) *payment.Payment {
		p, err := payment.New("p", "o", "u", amount, cur, now)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name  string
		rules payment.Rules
		p     *payment.Payment
		want  string
	}{
		{"no rules", payment.Rules{}, mk(1<<40, "EUR"), ""},
		{"at limit", payment.Rules{MaxAmountCents: 1000}, mk(1000, "EUR"), ""},
		{"over limit", payment.Rules{MaxAmountCents: 1000}, mk(1001, "EUR"), payment.ReasonOverLimit},
		{"currency ok", payment.Rules{Currencies: []string{"EUR", "USD"}}, mk(1, "USD"), ""},
		{"currency refused", payment.Rules{Currencies: []string{"EUR"}}, mk(1, "JPY"), payment.ReasonCurrency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.rules.Decline(tt.p); got != tt.want {
				t.Fatalf("Decline = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCancelDecision(t *testing.T) {
	mk := func(finish func(*payment.Payment)) *payment.Payment {
		p, err := payment.New("p", "o", "u", 100, "EUR", now)
		if err != nil {
			t.Fatal(err)
		}
		finish(p)
		return p
	}
	c, err := payment.NewCancelled("c", "o", "u", 100, "EUR", now)
	if err != nil || c.Status() != payment.Cancelled || !c.Final() || len(c.Events()) != 0 {
		t.Fatalf("cancelled claim = %+v, %v", c.Snapshot(), err)
	}
	tests := []struct {
		name string
		p    *payment.Payment
		want payment.CancelAction
	}{
		{"in flight", mk(func(*payment.Payment) {}), payment.CancelFlag},
		{"succeeded", mk(func(p *payment.Payment) { p.Succeed(now) }), payment.CancelRefund},
		{"failed", mk(func(p *payment.Payment) { p.Fail("x", now) }), payment.CancelNothing},
		{"refunded", mk(func(p *payment.Payment) { p.Succeed(now); p.Refund(now) }), payment.CancelNothing},
		{"cancelled claim", c, payment.CancelNothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.OnCancel(); got != tt.want {
				t.Fatalf("OnCancel = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFlaggedChargeNeedsRefundOnceSucceeded(t *testing.T) {
	p, _ := payment.New("p", "o", "u", 100, "EUR", now)
	p.OnCancel()
	if !p.CancelRequested() || p.NeedsRefund() {
		t.Fatal("a flagged PENDING charge has nothing to refund yet")
	}
	p.Succeed(now)
	if !p.NeedsRefund() {
		t.Fatal("a flagged charge that succeeded does not ask for a refund")
	}
	// A stored copy keeps the flag (the repository round-trips it).
	if !payment.FromSnapshot(p.Snapshot()).NeedsRefund() {
		t.Fatal("the flag was lost through a snapshot")
	}
}

func TestRefundOnlyOnceAndOnlyFromSucceeded(t *testing.T) {
	p, _ := payment.New("p", "o", "u", 100, "EUR", now)
	if p.Refund(now) {
		t.Fatal("refunded a charge still in flight")
	}
	p.Fail("x", now)
	if p.Refund(now) {
		t.Fatal("refunded a failed charge")
	}
	q, _ := payment.New("q", "o2", "u", 100, "EUR", now)
	q.Succeed(now)
	if !q.Refund(now) || q.Status() != payment.Refunded || q.Reason() != payment.ReasonOrderCancelled {
		t.Fatalf("refund = %+v", q.Snapshot())
	}
	if q.Refund(now) {
		t.Fatal("refunded twice")
	}
	ev := q.Events()
	if len(ev) != 2 || ev[1].EventType() != "payment.refunded" || ev[1].PaymentSnapshot().Status != payment.Refunded {
		t.Fatalf("events = %#v", ev)
	}
}

func TestCloseOnlyAFlaggedPendingCharge(t *testing.T) {
	p, _ := payment.New("p", "o", "u", 100, "EUR", now)
	if p.NeedsVoid() || p.Close(false, now) {
		t.Fatal("closed a charge nobody cancelled")
	}
	p.OnCancel()
	if !p.NeedsVoid() || !p.Close(false, now) || p.Status() != payment.Cancelled || len(p.Events()) != 0 {
		t.Fatalf("close without a charge taken = %+v, events %v", p.Snapshot(), p.Events())
	}
	q, _ := payment.New("q", "o", "u", 100, "EUR", now)
	q.OnCancel()
	if !q.Close(true, now) || q.Status() != payment.Refunded || q.NeedsVoid() || q.Close(true, now) {
		t.Fatalf("close of a charge the void refunded = %+v", q.Snapshot())
	}
	if ev := q.Events(); len(ev) != 2 || ev[0].EventType() != "payment.succeeded" || ev[1].EventType() != "payment.refunded" {
		t.Fatalf("events = %v", ev)
	}
}

// TestVoidedEndsAPendingChargeCancelled: a charge the provider declined as
// voided was never taken, whether or not this copy of the row saw the flag
// (claimed before the cancel): CANCELLED, no event, and only from PENDING.
func TestVoidedEndsAPendingChargeCancelled(t *testing.T) {
	p, _ := payment.New("p", "o", "u", 100, "EUR", now)
	if !p.Voided(now) || p.Status() != payment.Cancelled || p.Reason() != payment.ReasonOrderCancelled || len(p.Events()) != 0 {
		t.Fatalf("voided = %+v, events %v", p.Snapshot(), p.Events())
	}
	q, _ := payment.New("q", "o", "u", 100, "EUR", now)
	q.Succeed(now)
	if q.Voided(now) || q.Status() != payment.Succeeded {
		t.Fatalf("a succeeded charge was voided: %+v", q.Snapshot())
	}
}
