package adapters

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

func TestLatencyQuantiles(t *testing.T) {
	// z = 0 is the median and z = z99 is the p99, by construction.
	if got := latency(20, 120, 0); got != 20*time.Millisecond {
		t.Errorf("median = %v", got)
	}
	if got := latency(20, 120, z99); math.Abs(float64(got-120*time.Millisecond)) > float64(time.Microsecond) {
		t.Errorf("p99 = %v", got)
	}
	if got := latency(20, 20, 3); got != 20*time.Millisecond {
		t.Errorf("no spread = %v", got)
	}
	if got := latency(0, 100, 1); got != 0 {
		t.Errorf("zero median = %v", got)
	}
	if a, b := latency(20, 120, 10), latency(20, 120, 4); a != b {
		t.Errorf("draws are not clamped: %v vs %v", a, b)
	}
	if got := latency(1000, 10000, 4); got != config.MaxLatency {
		t.Errorf("a 4-sigma draw of median 1 s, p99 10 s = %v, want it capped at %v", got, config.MaxLatency)
	}
}

func TestSimulatedProviderFaultsAndKeys(t *testing.T) {
	s := config.Dynamic{FailureRate: 1}
	p := NewSimulatedProvider(func() config.Dynamic { return s })
	ctx := context.Background()
	c := payment.Charge{IdempotencyKey: "k1", AmountCents: 100, Currency: "EUR"}
	if _, err := p.Charge(ctx, c); !errors.Is(err, payment.ErrProviderFault) {
		t.Fatalf("failure_rate=1: err = %v", err)
	}
	s.FailureRate = 0 // what a dynconfig update does
	for range 3 {
		a, err := p.Charge(ctx, c)
		if err != nil || !a.Approved {
			t.Fatalf("after fault cleared: %+v %v", a, err)
		}
	}
	if p.Charges() != 1 {
		t.Fatalf("charges = %d for one key, want 1", p.Charges())
	}
}

func TestSimulatedProviderRefundsOncePerKeyUnderFaults(t *testing.T) {
	s := config.Dynamic{}
	p := NewSimulatedProvider(func() config.Dynamic { return s })
	ctx := context.Background()
	r := payment.Refund{IdempotencyKey: "k1", AmountCents: 100, Currency: "EUR"}
	if _, err := p.Charge(ctx, payment.Charge{IdempotencyKey: "k1", AmountCents: 100, Currency: "EUR"}); err != nil {
		t.Fatal(err)
	}
	s.FailureRate = 1
	if err := p.Refund(ctx, r); !errors.Is(err, payment.ErrProviderFault) {
		t.Fatalf("failure_rate=1: err = %v", err)
	}
	if p.Refunds() != 0 || p.Refunded("k1") {
		t.Fatal("a faulted refund was counted")
	}
	s.FailureRate = 0
	for range 3 {
		if err := p.Refund(ctx, r); err != nil {
			t.Fatalf("after fault cleared: %v", err)
		}
	}
	if p.Refunds() != 1 || !p.Refunded("k1") || !p.Charged("k1") {
		t.Fatalf("refunds = %d for one key, want 1", p.Refunds())
	}
}

// TestSimulatedProviderRefundsAChargeItHasNoRecordOf: the provider's memory
// is the process's, so after payment restarts it has no record of charges
// made before. The payment service refunds only what it stored SUCCEEDED, so
// such a refund is paid (once per key, counted apart), not refused: refused,
// the cancel was retried until dead-lettered and the customer stayed charged.
func TestSimulatedProviderRefundsAChargeItHasNoRecordOf(t *testing.T) {
	settings := func() config.Dynamic { return config.Dynamic{} }
	ctx := context.Background()
	before := NewSimulatedProvider(settings)
	if a, err := before.Charge(ctx, payment.Charge{IdempotencyKey: "k1", AmountCents: 100, Currency: "EUR"}); err != nil || !a.Approved {
		t.Fatal(a, err)
	}
	after := NewSimulatedProvider(settings) // the restarted process
	r := payment.Refund{IdempotencyKey: "k1", AmountCents: 100, Currency: "EUR"}
	for range 2 {
		if err := after.Refund(ctx, r); err != nil {
			t.Fatalf("refund after a restart: %v", err)
		}
	}
	if after.Refunds() != 1 || after.UnrecordedRefunds() != 1 || !after.Refunded("k1") {
		t.Fatalf("refunds %d, unrecorded %d; want 1 and 1", after.Refunds(), after.UnrecordedRefunds())
	}
}

// TestSimulatedProviderRefusesToRefundADeclinedCharge: a key the provider
// remembers declining took no money, so its refund is refused.
func TestSimulatedProviderRefusesToRefundADeclinedCharge(t *testing.T) {
	p := NewSimulatedProvider(func() config.Dynamic { return config.Dynamic{} })
	p.answers["k1"] = payment.Answer{Reason: payment.ReasonCardDecline}
	err := p.Refund(context.Background(), payment.Refund{IdempotencyKey: "k1", AmountCents: 100, Currency: "EUR"})
	if !errors.Is(err, ErrChargeDeclined) || errors.Is(err, payment.ErrProviderFault) || p.Refunds() != 0 {
		t.Fatalf("refund of a declined charge: err = %v, refunds %d; want ErrChargeDeclined and none", err, p.Refunds())
	}
}

// TestSimulatedProviderVoid: a void declines a charge that comes after it
// and refunds, once, a charge made before it; a faulted void changes nothing.
func TestSimulatedProviderVoid(t *testing.T) {
	s := config.Dynamic{FailureRate: 1}
	p := NewSimulatedProvider(func() config.Dynamic { return s })
	ctx := context.Background()
	if _, err := p.Void(ctx, payment.Void{IdempotencyKey: "k1"}); !errors.Is(err, payment.ErrProviderFault) {
		t.Fatalf("failure_rate=1: err = %v", err)
	}
	s.FailureRate = 0
	if a, err := p.Charge(ctx, payment.Charge{IdempotencyKey: "k2"}); err != nil || !a.Approved {
		t.Fatal(a, err)
	}
	for range 2 {
		if refunded, err := p.Void(ctx, payment.Void{IdempotencyKey: "k1"}); err != nil || refunded {
			t.Fatalf("void of an unanswered key: refunded %v, %v", refunded, err)
		}
		if refunded, err := p.Void(ctx, payment.Void{IdempotencyKey: "k2"}); err != nil || !refunded {
			t.Fatalf("void of a charged key: refunded %v, %v", refunded, err)
		}
	}
	if a, err := p.Charge(ctx, payment.Charge{IdempotencyKey: "k1"}); err != nil || a.Approved || a.Reason != payment.ReasonVoided {
		t.Fatalf("charge after its void = %+v, %v; want declined %s", a, err, payment.ReasonVoided)
	}
	if err := p.Refund(ctx, payment.Refund{IdempotencyKey: "k2"}); err != nil {
		t.Fatalf("refund after the void refunded: %v", err)
	}
	if p.Charges() != 1 || p.Refunds() != 1 || p.Charged("k1") || !p.Refunded("k2") {
		t.Fatalf("charges %d, refunds %d; want 1 and 1 (k2 only)", p.Charges(), p.Refunds())
	}
}
