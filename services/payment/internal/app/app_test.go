package app_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// memoryPayments is a unit-test fake; the gorm repository is tested on
// PostgreSQL and SQLite in adapters.
type memoryPayments struct {
	mu      sync.Mutex
	byOrder map[string]payment.Snapshot
	events  []payment.Event
	dead    []payment.DeadLetter
}

func (m *memoryPayments) Claim(_ context.Context, p *payment.Payment) (*payment.Payment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.byOrder[p.OrderID()]; ok {
		return payment.FromSnapshot(s), nil
	}
	m.byOrder[p.OrderID()] = p.Snapshot()
	// A payment claimed already final (declined by the rules) is stored with
	// its event, as the gorm repository does in one transaction.
	m.events = append(m.events, p.Events()...)
	return payment.FromSnapshot(p.Snapshot()), nil
}

func (m *memoryPayments) Complete(_ context.Context, p *payment.Payment) (bool, bool, error) {
	ok, flagged := m.transition(p, payment.Pending)
	return ok, flagged, nil
}

func (m *memoryPayments) SaveRefund(_ context.Context, p *payment.Payment) (bool, error) {
	ok, _ := m.transition(p, payment.Succeeded)
	return ok, nil
}

func (m *memoryPayments) DeleteSettledDeadLetters(_ context.Context, before time.Time, limit int) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept, n := m.dead[:0], 0
	for _, d := range m.dead {
		s, ok := m.byOrder[d.OrderID]
		if n < limit && d.OrderID != "" && ok && s.Status != payment.Pending && s.Status != payment.Succeeded && d.CreatedAt.Before(before) {
			n++
			continue
		}
		kept = append(kept, d)
	}
	m.dead = kept
	return n, nil
}

func (m *memoryPayments) SaveRefundDeclined(_ context.Context, p *payment.Payment) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.byOrder[p.OrderID()]
	if cur.Status != payment.Succeeded || cur.Reason == payment.ReasonRefundDeclined {
		return false, nil
	}
	cur.Reason, cur.UpdatedAt = p.Reason(), p.Snapshot().UpdatedAt
	m.byOrder[p.OrderID()] = cur
	return true, nil
}

func (m *memoryPayments) transition(p *payment.Payment, from payment.Status) (stored, flagged bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.byOrder[p.OrderID()]
	if cur.Status != from {
		return false, false
	}
	next := p.Snapshot()
	next.CancelRequested = cur.CancelRequested
	m.byOrder[p.OrderID()] = next
	m.events = append(m.events, p.Events()...)
	return true, cur.CancelRequested
}

func (m *memoryPayments) RequestCancel(_ context.Context, p *payment.Payment) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.byOrder[p.OrderID()]
	if cur.Status != payment.Pending {
		return false, nil
	}
	cur.CancelRequested = true
	m.byOrder[p.OrderID()] = cur
	return true, nil
}

func (m *memoryPayments) eventTypes() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, e := range m.events {
		out = append(out, e.EventType())
	}
	return out
}

func (m *memoryPayments) Get(_ context.Context, userID, id string) (*payment.Payment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.byOrder {
		if s.ID == id && s.UserID == userID {
			return payment.FromSnapshot(s), nil
		}
	}
	return nil, payment.ErrNotFound
}

// List ignores the cursor and limit (paging is tested on the databases).
func (m *memoryPayments) List(_ context.Context, userID string, q payment.ListQuery) ([]*payment.Payment, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*payment.Payment
	for _, s := range m.byOrder {
		if s.UserID == userID && (q.OrderID == "" || s.OrderID == q.OrderID) {
			out = append(out, payment.FromSnapshot(s))
		}
	}
	return out, "", nil
}

func (m *memoryPayments) SaveDeadLetter(_ context.Context, d payment.DeadLetter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.dead {
		if d.MessageKey != "" && o.MessageKey == d.MessageKey {
			return payment.ErrDeadLetterRecorded
		}
	}
	m.dead = append(m.dead, d)
	return nil
}

func (m *memoryPayments) ChargeDeadLettered(_ context.Context, orderID string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, d := range m.dead {
		if d.OrderID == orderID {
			return true, nil
		}
	}
	return false, nil
}

func (m *memoryPayments) Unsettled(_ context.Context, limit int) ([]*payment.Payment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*payment.Payment
	seen := map[string]bool{}
	deadCreate := func(orderID string) bool {
		for _, d := range m.dead {
			if d.OrderID == orderID && d.EventType == "order.created" {
				return true
			}
		}
		return false
	}
	for _, d := range m.dead {
		s, ok := m.byOrder[d.OrderID]
		if !ok || len(out) == limit || seen[d.OrderID] || s.Reason == payment.ReasonRefundDeclined {
			continue
		}
		if (s.CancelRequested && (s.Status == payment.Pending || s.Status == payment.Succeeded) && d.EventType == "order.created") ||
			(s.Status == payment.Succeeded && d.EventType == "order.cancelled") ||
			(s.Status == payment.Pending && d.EventType == "order.cancelled" && deadCreate(d.OrderID)) {
			seen[d.OrderID] = true
			out = append(out, payment.FromSnapshot(s))
		}
	}
	return out, nil
}

func (m *memoryPayments) ByOrder(_ context.Context, orderID string) (*payment.Payment, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s, ok := m.byOrder[orderID]; ok {
		return payment.FromSnapshot(s), nil
	}
	return nil, payment.ErrNotFound
}

// countingProvider answers from a script and counts charges and refunds.
// When charging is set, Charge signals it and waits for release, so a test
// can act while a charge is in flight.
type countingProvider struct {
	mu          sync.Mutex
	calls       int
	refunds     map[string]int
	fault       error
	refundFault error
	voids       int
	decline     string
	charging    chan struct{}
	release     chan struct{}
}

func (c *countingProvider) Refund(_ context.Context, r payment.Refund) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.refundFault != nil {
		return c.refundFault
	}
	if c.refunds == nil {
		c.refunds = map[string]int{}
	}
	if c.refunds[r.IdempotencyKey] == 0 { // idempotent by key, like the simulated one
		c.refunds[r.IdempotencyKey]++
	}
	return nil
}

// Void counts the voids; the fake keeps no charges by key, so it reports
// none taken (the simulated provider's voids are tested in adapters).
func (c *countingProvider) Void(context.Context, payment.Void) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.voids++
	return false, nil
}

func (c *countingProvider) refunded() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.refunds {
		n += v
	}
	return n
}

func (c *countingProvider) Charge(_ context.Context, ch payment.Charge) (payment.Answer, error) {
	if c.charging != nil {
		c.charging <- struct{}{}
		<-c.release
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.fault != nil {
		return payment.Answer{}, c.fault
	}
	if c.decline != "" {
		return payment.Answer{Reason: c.decline}, nil
	}
	return payment.Answer{Approved: true}, nil
}

func setup(rules payment.Rules) (app.Application, *memoryPayments, *countingProvider) {
	repo := &memoryPayments{byOrder: map[string]payment.Snapshot{}}
	prov := &countingProvider{}
	n := 0
	a := app.New(app.Deps{
		Payments: repo, Provider: prov, Rules: func() payment.Rules { return rules },
		NewID: func() string { n++; return fmt.Sprintf("p%d", n) },
		Now:   func() time.Time { return time.Unix(0, 0) },
	})
	return a, repo, prov
}

var order1 = app.ChargeOrder{OrderID: "o1", UserID: "u1", TotalCents: 500, Currency: "EUR"}

func TestChargeOnceUnderRedelivery(t *testing.T) {
	a, repo, prov := setup(payment.Rules{})
	ctx := context.Background()
	first, err := a.ChargeOrder.Handle(ctx, order1)
	if err != nil || first.Status != payment.Succeeded || first.Duplicate {
		t.Fatalf("first = %+v, %v", first, err)
	}
	for range 3 {
		again, err := a.ChargeOrder.Handle(ctx, order1)
		if err != nil || !again.Duplicate || again.PaymentID != first.PaymentID {
			t.Fatalf("redelivery = %+v, %v", again, err)
		}
	}
	if prov.calls != 1 || len(repo.events) != 1 {
		t.Fatalf("provider calls %d, events %d; want 1 and 1", prov.calls, len(repo.events))
	}
}

func TestFaultIsTransientAndRetrySucceeds(t *testing.T) {
	a, repo, prov := setup(payment.Rules{})
	ctx := context.Background()
	prov.fault = errors.New("timeout")
	_, err := a.ChargeOrder.Handle(ctx, order1)
	if !errors.Is(err, payment.ErrProviderFault) {
		t.Fatalf("err = %v, want ErrProviderFault", err)
	}
	if len(repo.events) != 0 {
		t.Fatal("a fault emitted an event")
	}
	prov.fault = nil
	res, err := a.ChargeOrder.Handle(ctx, order1)
	if err != nil || res.Status != payment.Succeeded {
		t.Fatalf("after fault cleared = %+v, %v", res, err)
	}
	if res.PaymentID != "p1" {
		t.Fatalf("retry made a new payment %s instead of reusing the claim p1", res.PaymentID)
	}
}

func TestDeclines(t *testing.T) {
	a, repo, prov := setup(payment.Rules{MaxAmountCents: 100})
	res, err := a.ChargeOrder.Handle(context.Background(), order1)
	if err != nil || res.Status != payment.Failed || res.Reason != payment.ReasonOverLimit {
		t.Fatalf("over limit = %+v, %v", res, err)
	}
	if prov.calls != 0 {
		t.Fatal("a rule-declined payment reached the provider")
	}
	if len(repo.events) != 1 || repo.events[0].EventType() != "payment.failed" {
		t.Fatalf("events = %v", repo.events)
	}

	a, _, prov = setup(payment.Rules{})
	prov.decline = payment.ReasonCardDecline
	res, err = a.ChargeOrder.Handle(context.Background(), order1)
	if err != nil || res.Status != payment.Failed || res.Reason != payment.ReasonCardDecline {
		t.Fatalf("provider decline = %+v, %v", res, err)
	}
}

func TestInvalidEventIsPermanent(t *testing.T) {
	a, repo, _ := setup(payment.Rules{})
	_, err := a.ChargeOrder.Handle(context.Background(), app.ChargeOrder{OrderID: "o", UserID: "u", TotalCents: 0, Currency: "EUR"})
	if !errors.Is(err, payment.ErrInvalid) {
		t.Fatalf("err = %v", err)
	}
	if len(repo.byOrder) != 0 {
		t.Fatal("invalid event claimed a payment")
	}
}

func TestOwnDataOnly(t *testing.T) {
	a, _, _ := setup(payment.Rules{})
	ctx := context.Background()
	res, _ := a.ChargeOrder.Handle(ctx, order1)
	if _, err := a.GetPayment.Handle(ctx, "u2", res.PaymentID); !errors.Is(err, payment.ErrNotFound) {
		t.Fatalf("other user's payment: %v", err)
	}
	if p, err := a.ListPayments.Handle(ctx, "u2", payment.ListQuery{OrderID: "o1"}); err != nil || len(p.Payments) != 0 {
		t.Fatalf("other user's list: %v %v", p, err)
	}
	if p, err := a.ListPayments.Handle(ctx, "u1", payment.ListQuery{OrderID: "o1"}); err != nil || len(p.Payments) != 1 {
		t.Fatalf("own list: %v %v", p, err)
	}
}

// completeFailsOnce is the memory repository whose first Complete fails, as
// a database error right after the provider approved the charge would.
type completeFailsOnce struct {
	*memoryPayments
	failed atomic.Bool
}

func (c *completeFailsOnce) Complete(ctx context.Context, p *payment.Payment) (bool, bool, error) {
	if c.failed.CompareAndSwap(false, true) {
		return false, false, errors.New("connection reset")
	}
	return c.memoryPayments.Complete(ctx, p)
}

// TestRedeliveryAfterChargeIsNotDeclinedByNewRules: the first delivery's
// charge went through at the provider, but storing its answer failed, so
// order.created is redelivered; meanwhile the decline rules changed (etcd).
// The redelivery must ask the provider again under the same key (a real one
// answers "approved" from memory), not decline: a FAILED row and
// payment.failed for an order whose money was taken, which nothing refunds.
func TestRedeliveryAfterChargeIsNotDeclinedByNewRules(t *testing.T) {
	repo := &completeFailsOnce{memoryPayments: &memoryPayments{byOrder: map[string]payment.Snapshot{}}}
	prov := &countingProvider{}
	var limit atomic.Int64 // no limit at first
	a := app.New(app.Deps{
		Payments: repo, Provider: prov,
		Rules: func() payment.Rules { return payment.Rules{MaxAmountCents: limit.Load()} },
		NewID: func() string { return "p1" },
	})
	ctx := context.Background()
	if _, err := a.ChargeOrder.Handle(ctx, order1); err == nil {
		t.Fatal("first delivery: want the store error")
	}
	limit.Store(order1.TotalCents - 1) // the operator lowers decline_above_cents below the order's total
	res, err := a.ChargeOrder.Handle(ctx, order1)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != payment.Succeeded || prov.calls != 2 {
		t.Fatalf("redelivery = %+v after %d provider calls (events %v); want SUCCEEDED, the provider asked again under the same key",
			res, prov.calls, repo.eventTypes())
	}
	if got := repo.eventTypes(); len(got) != 1 || got[0] != "payment.succeeded" {
		t.Fatalf("events = %v, want [payment.succeeded]", got)
	}
}

// TestDeclinedAtClaimIsOneFinalRow: a declined order is stored FAILED with
// its payment.failed when its row is claimed, never PENDING, so no later
// delivery re-decides it; a redelivery (even after the rule was lifted) is a
// duplicate that neither charges nor emits.
func TestDeclinedAtClaimIsOneFinalRow(t *testing.T) {
	limit := &atomic.Int64{}
	limit.Store(100)
	repo := &memoryPayments{byOrder: map[string]payment.Snapshot{}}
	prov := &countingProvider{}
	var n atomic.Int64
	a := app.New(app.Deps{
		Payments: repo, Provider: prov,
		Rules: func() payment.Rules { return payment.Rules{MaxAmountCents: limit.Load()} },
		NewID: func() string { return fmt.Sprintf("p%d", n.Add(1)) },
	})
	ctx := context.Background()
	res, err := a.ChargeOrder.Handle(ctx, order1)
	if err != nil || res.Status != payment.Failed || res.Reason != payment.ReasonOverLimit || res.Duplicate {
		t.Fatalf("first = %+v, %v", res, err)
	}
	limit.Store(0)
	again, err := a.ChargeOrder.Handle(ctx, order1)
	if err != nil || !again.Duplicate || again.Status != payment.Failed {
		t.Fatalf("redelivery = %+v, %v", again, err)
	}
	if got := repo.eventTypes(); prov.calls != 0 || len(got) != 1 || got[0] != "payment.failed" {
		t.Fatalf("provider calls %d, events %v; want 0 and [payment.failed]", prov.calls, got)
	}
}
