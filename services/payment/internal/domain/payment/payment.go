// Package payment holds the payment aggregate: one charge per order, the
// decline rules, and the provider the charge goes through.
package payment

import (
	"fmt"
	"time"
)

// Status of a charge. PENDING means claimed but not yet answered by the
// provider; the other two are final.
type Status string

const (
	Pending   Status = "PENDING"
	Succeeded Status = "SUCCEEDED"
	Failed    Status = "FAILED"
)

// Payment is the aggregate. There is at most one per order (the repository
// enforces a unique order id), which is what makes redelivery safe.
type Payment struct {
	id          string
	orderID     string
	userID      string
	amountCents int64
	currency    string
	status      Status
	reason      string
	createdAt   time.Time
	updatedAt   time.Time

	events []Event
}

// New claims a charge for an order. It does not talk to the provider.
func New(id, orderID, userID string, amountCents int64, currency string, now time.Time) (*Payment, error) {
	switch {
	case orderID == "":
		return nil, fmt.Errorf("%w: order_id is empty", ErrInvalid)
	case userID == "":
		return nil, fmt.Errorf("%w: user_id is empty", ErrInvalid)
	case amountCents <= 0:
		return nil, fmt.Errorf("%w: total_cents must be positive, got %d", ErrInvalid, amountCents)
	case len(currency) != 3:
		return nil, fmt.Errorf("%w: currency must be an ISO 4217 code, got %q", ErrInvalid, currency)
	}
	now = now.UTC()
	return &Payment{id: id, orderID: orderID, userID: userID, amountCents: amountCents, currency: currency,
		status: Pending, createdAt: now, updatedAt: now}, nil
}

// Succeed records an approved charge. Only a pending payment can finish, so
// a second answer for the same charge is ignored (returns false).
func (p *Payment) Succeed(now time.Time) bool { return p.finish(Succeeded, "", now) }

// Fail records a declined charge with its reason.
func (p *Payment) Fail(reason string, now time.Time) bool { return p.finish(Failed, reason, now) }

func (p *Payment) finish(s Status, reason string, now time.Time) bool {
	if p.status != Pending {
		return false
	}
	p.status, p.reason, p.updatedAt = s, reason, now.UTC()
	if s == Succeeded {
		p.record(SucceededEvent{Payment: p.Snapshot()})
	} else {
		p.record(FailedEvent{Payment: p.Snapshot()})
	}
	return true
}

// Final reports whether the provider has answered.
func (p *Payment) Final() bool { return p.status != Pending }

func (p *Payment) ID() string           { return p.id }
func (p *Payment) OrderID() string      { return p.orderID }
func (p *Payment) UserID() string       { return p.userID }
func (p *Payment) AmountCents() int64   { return p.amountCents }
func (p *Payment) Currency() string     { return p.currency }
func (p *Payment) Status() Status       { return p.status }
func (p *Payment) Reason() string       { return p.reason }
func (p *Payment) CreatedAt() time.Time { return p.createdAt }

// Snapshot is a plain copy of a payment for events, adapters and views.
type Snapshot struct {
	ID          string
	OrderID     string
	UserID      string
	AmountCents int64
	Currency    string
	Status      Status
	Reason      string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

func (p *Payment) Snapshot() Snapshot {
	return Snapshot{ID: p.id, OrderID: p.orderID, UserID: p.userID, AmountCents: p.amountCents, Currency: p.currency,
		Status: p.status, Reason: p.reason, CreatedAt: p.createdAt, UpdatedAt: p.updatedAt}
}

// FromSnapshot rebuilds a stored payment without recording events.
func FromSnapshot(s Snapshot) *Payment {
	return &Payment{id: s.ID, orderID: s.OrderID, userID: s.UserID, amountCents: s.AmountCents, currency: s.Currency,
		status: s.Status, reason: s.Reason, createdAt: s.CreatedAt, updatedAt: s.UpdatedAt}
}
