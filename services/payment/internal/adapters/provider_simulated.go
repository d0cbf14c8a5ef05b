package adapters

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// SimulatedProvider stands in for a card processor. Its latency follows a
// log-normal distribution fixed by a median and a p99 (real service latency
// is right-skewed, and two quantiles are what operators think in), and a
// share of calls fault. Both are read from settings on every call, so
// changing the etcd value takes effect on the next charge.
//
// Like a real processor it honours idempotency keys: a key it has answered
// is answered again from memory, never charged twice, and a charge is
// refunded at most once. Memory is bounded; the oldest keys are forgotten
// first.
type SimulatedProvider struct {
	settings func() config.Dynamic
	sleep    func(context.Context, time.Duration) error

	mu      sync.Mutex
	answers map[string]payment.Answer
	order   []string
	charges int
	limit   int

	refunded     map[string]bool
	refundOrder  []string
	refundsTotal int
	// refundsUnrecorded counts the refunds of keys with no charge in memory.
	refundsUnrecorded int

	calls metric.Int64Counter
}

// NewSimulatedProvider reads its behaviour from settings on each charge.
func NewSimulatedProvider(settings func() config.Dynamic) *SimulatedProvider {
	calls, _ := otel.Meter("shanhai/payment").Int64Counter("shanhai.payment.provider.calls",
		metric.WithDescription("simulated provider calls by result (approved, replayed, fault, refunded, refund_replayed, refund_fault, refund_unrecorded, refund_declined, voided, void_refunded, void_replayed, void_fault, cut_off)"))
	// Every result's series exists from the start, at 0: the saga dashboard
	// reads the counter with rate(), which needs two samples of a series, so
	// a series born at 1 by a result's first call would show nothing.
	for _, result := range providerResults {
		calls.Add(context.Background(), 0, metric.WithAttributes(attribute.String("result", result)))
	}
	return &SimulatedProvider{settings: settings, sleep: sleepCtx, answers: map[string]payment.Answer{}, refunded: map[string]bool{}, limit: 100_000, calls: calls}
}

// providerResults are the result values of shanhai.payment.provider.calls.
var providerResults = []string{"approved", "replayed", "fault", "refunded", "refund_replayed", "refund_fault",
	"refund_unrecorded", "refund_declined", "voided", "void_refunded", "void_replayed", "void_fault", "cut_off"}

func (p *SimulatedProvider) Charge(ctx context.Context, c payment.Charge) (payment.Answer, error) {
	if a, ok := p.remembered(c.IdempotencyKey); ok {
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "replayed")))
		return a, nil
	}
	s := p.settings()
	if err := p.wait(ctx, s); err != nil {
		return payment.Answer{}, err
	}
	if s.FailureRate > 0 && rand.Float64() < s.FailureRate {
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "fault")))
		return payment.Answer{}, fmt.Errorf("%w: simulated outage (failure_rate=%g)", payment.ErrProviderFault, s.FailureRate)
	}
	a := payment.Answer{Approved: true}
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.answers[c.IdempotencyKey]; ok { // a concurrent call with the same key won, or a void
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "replayed")))
		return prev, nil
	}
	p.charges++
	p.remember(c.IdempotencyKey, a)
	p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "approved")))
	return a, nil
}

// Refund gives a charge back once per key, with the same latency and fault
// injection as a charge: failure_rate applies to refunds too, so the
// compensation's retry path can be exercised the same way. A refund of a key
// already refunded is answered from memory. A key it remembers declining is
// refused (no money was taken; not a fault). A key it has no record of is
// refunded and counted apart (UnrecordedRefunds, result refund_unrecorded):
// its memory is the process's and bounded, and the payment service only
// refunds charges it stored SUCCEEDED, so such a key is a charge made before
// a restart or evicted since; refused, the cancel was retried until
// dead-lettered and the customer stayed charged.
func (p *SimulatedProvider) Refund(ctx context.Context, r payment.Refund) error {
	p.mu.Lock()
	done := p.refunded[r.IdempotencyKey]
	p.mu.Unlock()
	if done {
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "refund_replayed")))
		return nil
	}
	s := p.settings()
	if err := p.wait(ctx, s); err != nil {
		return err
	}
	if s.FailureRate > 0 && rand.Float64() < s.FailureRate {
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "refund_fault")))
		return fmt.Errorf("%w: simulated outage (failure_rate=%g)", payment.ErrProviderFault, s.FailureRate)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refunded[r.IdempotencyKey] { // a concurrent refund with the same key won
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "refund_replayed")))
		return nil
	}
	a, recorded := p.answers[r.IdempotencyKey]
	if recorded && !a.Approved {
		// Counted like every other answer: uncounted, the one refund a
		// person must settle by hand left no trace in the calls counter.
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "refund_declined")))
		return fmt.Errorf("refund %s: %w", r.IdempotencyKey, ErrChargeDeclined)
	}
	result := "refunded"
	if !recorded {
		result = "refund_unrecorded"
		p.refundsUnrecorded++
	}
	p.recordRefund(r.IdempotencyKey)
	p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
	return nil
}

// recordRefund remembers a refund of key (bounded, oldest forgotten first).
// p.mu must be held.
func (p *SimulatedProvider) recordRefund(key string) {
	p.refundsTotal++
	p.refunded[key] = true
	p.refundOrder = append(p.refundOrder, key)
	if len(p.refundOrder) > p.limit {
		delete(p.refunded, p.refundOrder[0])
		p.refundOrder = p.refundOrder[1:]
	}
}

// remember stores key's answer (bounded, oldest forgotten first). p.mu must
// be held.
func (p *SimulatedProvider) remember(key string, a payment.Answer) {
	p.answers[key] = a
	p.order = append(p.order, key)
	if len(p.order) > p.limit {
		delete(p.answers, p.order[0])
		p.order = p.order[1:]
	}
}

// Void closes a key, with the latency and fault injection of a refund: a key
// it charged is refunded (once: result void_refunded, or void_replayed when
// already refunded); a key it has not answered is remembered as declined
// (ReasonVoided), so a charge still on its way is declined (result voided);
// a key it declined (voided before) needs nothing (void_replayed). Like Refund it cannot know of a charge
// made before a restart: such a key is voided, not refunded.
func (p *SimulatedProvider) Void(ctx context.Context, v payment.Void) (bool, error) {
	s := p.settings()
	if err := p.wait(ctx, s); err != nil {
		return false, err
	}
	if s.FailureRate > 0 && rand.Float64() < s.FailureRate {
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "void_fault")))
		return false, fmt.Errorf("%w: simulated outage (failure_rate=%g)", payment.ErrProviderFault, s.FailureRate)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a, answered := p.answers[v.IdempotencyKey]
	result, refunded := "voided", false
	switch {
	case p.refunded[v.IdempotencyKey]:
		result, refunded = "void_replayed", true
	case answered && a.Approved:
		p.recordRefund(v.IdempotencyKey)
		result, refunded = "void_refunded", true
	case answered:
		// Declined: it declines only keys voided before, so this void is a
		// repeat (concurrent deliveries, a lost answer), not one more void.
		result = "void_replayed"
	default:
		p.remember(v.IdempotencyKey, payment.Answer{Reason: payment.ReasonVoided})
	}
	p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
	return refunded, nil
}

// wait is a call's simulated latency. A caller that gives up meanwhile (a
// stop's cut-off, a deadline) gets a fault, counted as cut_off: uncounted,
// such calls were missing from the calls counter.
func (p *SimulatedProvider) wait(ctx context.Context, s config.Dynamic) error {
	if err := p.sleep(ctx, latency(s.LatencyMedianMs, s.LatencyP99Ms, rand.NormFloat64())); err != nil {
		p.calls.Add(ctx, 1, metric.WithAttributes(attribute.String("result", "cut_off")))
		return fmt.Errorf("%w: %w", payment.ErrProviderFault, err)
	}
	return nil
}

// ErrChargeDeclined is the simulated provider's answer to a refund of a key
// whose charge it declined.
var ErrChargeDeclined = errors.New("the charge with this key was declined: nothing to refund")

// Refunds is how many distinct refunds were made (tests compare it with
// Charges).
func (p *SimulatedProvider) Refunds() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refundsTotal
}

// UnrecordedRefunds is how many of Refunds were of charges this provider
// had no record of (made before a restart, or evicted from memory).
func (p *SimulatedProvider) UnrecordedRefunds() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refundsUnrecorded
}

// Charged and Refunded report what the provider did for one key (tests).
func (p *SimulatedProvider) Charged(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.answers[key].Approved
}

func (p *SimulatedProvider) Refunded(key string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refunded[key]
}

// Charges is how many distinct charges were made (tests assert at most one
// per order).
func (p *SimulatedProvider) Charges() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.charges
}

func (p *SimulatedProvider) remembered(key string) (payment.Answer, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, ok := p.answers[key]
	return a, ok
}

// z99 is the standard normal quantile at 0.99.
const z99 = 2.3263478740408408

// latency maps a standard normal draw to a log-normal latency with the given
// median and p99 (in ms). Draws are clamped at 4 sigma and at
// config.MaxLatency so a single unlucky sample cannot stall a consumer for
// minutes: 4 sigma of a p99 ten times the median is 52 times the median.
func latency(medianMs, p99Ms, z float64) time.Duration {
	if medianMs <= 0 {
		return 0
	}
	sigma := 0.0
	if p99Ms > medianMs {
		sigma = math.Log(p99Ms/medianMs) / z99
	}
	z = max(-4, min(4, z))
	return min(config.MaxLatency, time.Duration(medianMs*math.Exp(sigma*z)*float64(time.Millisecond)))
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
