package payment_test

import (
	"errors"
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
