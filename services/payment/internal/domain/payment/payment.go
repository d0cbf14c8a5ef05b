// Package payment holds the payment aggregate: one charge per order, the
// decline rules, and the provider the charge goes through.
package payment

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Status of a charge. PENDING means claimed but not yet answered by the
// provider; SUCCEEDED and FAILED are its answers. REFUNDED follows SUCCEEDED
// when the order was cancelled after the charge. CANCELLED is a claim made by
// order.cancelled before any charge: it holds the order's one row so that a
// later order.created finds it and charges nothing.
type Status string

const (
	Pending   Status = "PENDING"
	Succeeded Status = "SUCCEEDED"
	Failed    Status = "FAILED"
	Refunded  Status = "REFUNDED"
	Cancelled Status = "CANCELLED"
)

// ReasonOrderCancelled is the reason of a payment.refunded event and of a
// CANCELLED claim.
const ReasonOrderCancelled = "order_cancelled"

// ReasonRefundDeclined is the reason a cancelled order's payment stays
// SUCCEEDED: the provider refused its refund (a business answer, not a
// fault), so no retry will give the money back and a person must
// (RefundDeclined).
const ReasonRefundDeclined = "refund_declined"

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
	// cancelRequested is set when order.cancelled arrived while the charge
	// was in flight (PENDING): whoever sees the charge succeed refunds it.
	cancelRequested bool
	createdAt       time.Time
	updatedAt       time.Time

	events []Event
}

// New claims a charge for an order. It does not talk to the provider.
func New(id, orderID, userID string, amountCents int64, currency string, now time.Time) (*Payment, error) {
	if err := validate(orderID, userID, amountCents, currency); err != nil {
		return nil, err
	}
	now = now.UTC()
	return &Payment{id: id, orderID: orderID, userID: userID, amountCents: amountCents, currency: currency,
		status: Pending, createdAt: now, updatedAt: now}, nil
}

// NewCancelled is the claim order.cancelled makes when it gets to an order
// first. Stored under the order's unique id, it turns a later or concurrent
// order.created into a no-op: nothing is charged, so nothing is emitted.
func NewCancelled(id, orderID, userID string, amountCents int64, currency string, now time.Time) (*Payment, error) {
	p, err := New(id, orderID, userID, amountCents, currency, now)
	if err != nil {
		return nil, err
	}
	p.status, p.reason = Cancelled, ReasonOrderCancelled
	return p, nil
}

func validate(orderID, userID string, amountCents int64, currency string) error {
	switch {
	case orderID == "":
		return fmt.Errorf("%w: order_id is empty", ErrInvalid)
	case userID == "":
		return fmt.Errorf("%w: user_id is empty", ErrInvalid)
	case !printable(orderID) || !printable(userID):
		// A NUL or invalid UTF-8 would fail the insert on every delivery
		// (PostgreSQL text holds neither): invalid now, not a retry later.
		return fmt.Errorf("%w: order_id %q and user_id %q must be printable text", ErrInvalid, orderID, userID)
	case len(orderID) > MaxIDBytes || len(userID) > MaxIDBytes:
		// Quoted only by length: the id may be a megabyte.
		return fmt.Errorf("%w: order_id (%d bytes) and user_id (%d bytes) must be at most %d bytes", ErrInvalid, len(orderID), len(userID), MaxIDBytes)
	case amountCents <= 0:
		return fmt.Errorf("%w: total_cents must be positive, got %d", ErrInvalid, amountCents)
	case !ISOCurrency(currency):
		return fmt.Errorf("%w: currency must be an ISO 4217 code, got %q", ErrInvalid, currency)
	}
	return nil
}

// MaxIDBytes bounds an order or user id. Both are UUIDs (36 bytes) where the
// platform makes them; the bound is what the indexes can hold with room to
// spare. PostgreSQL refuses a B-tree entry over about 2.7 kB (SQLSTATE
// 54000), and payments indexes order_id and (user_id, id): a longer id
// failed the claim the same way on every delivery, so its message was
// retried until its retries ran out instead of refused on the first.
const MaxIDBytes = 255

// PossibleUserID reports whether a payment can belong to userID: validate
// refuses any other, so a caller with such an id owns no payment.
func PossibleUserID(userID string) bool {
	return userID != "" && len(userID) <= MaxIDBytes && printable(userID)
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsFunc(s, unicode.IsControl)
}

// ISOCurrency accepts three upper-case ASCII letters, the form of every ISO
// 4217 code: the only currencies an order event can carry.
func ISOCurrency(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
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

// Matches reports whether an order event describes this payment's order:
// order.created and order.cancelled both carry the one order's user, total
// and currency, so an event for the same order id with others is corrupt or
// forged, and must neither charge nor refund.
func (p *Payment) Matches(userID string, amountCents int64, currency string) error {
	if p.userID != userID || p.amountCents != amountCents || p.currency != currency {
		return fmt.Errorf("%w: the event is for user %q, %d %s; order %s's payment is user %q's, %d %s",
			ErrInvalid, userID, amountCents, currency, p.orderID, p.userID, p.amountCents, p.currency)
	}
	return nil
}

// Final reports whether the charge is settled: answered by the provider,
// refunded, or cancelled before it was made.
func (p *Payment) Final() bool { return p.status != Pending }

// CancelAction is what an order.cancelled asks of a payment in its current state.
type CancelAction int

const (
	// CancelNothing: already failed, refunded or cancelled; nothing was or
	// remains charged.
	CancelNothing CancelAction = iota
	// CancelRefund: the charge succeeded; refund it.
	CancelRefund
	// CancelFlag: the charge is in flight; flag it so the charging path
	// refunds it as soon as it has succeeded.
	CancelFlag
)

// OnCancel decides what the order's cancellation means for this payment and,
// for an in-flight charge, records the request (persist it with the
// repository's RequestCancel).
func (p *Payment) OnCancel() CancelAction {
	switch p.status {
	case Succeeded:
		return CancelRefund
	case Pending:
		p.cancelRequested = true
		return CancelFlag
	default:
		return CancelNothing
	}
}

// CancelRequested reports whether the order was cancelled while the charge
// was in flight.
func (p *Payment) CancelRequested() bool { return p.cancelRequested }

// NeedsRefund reports whether a succeeded charge belongs to an order that was
// cancelled meanwhile and so must be refunded by whoever sees it.
func (p *Payment) NeedsRefund() bool { return p.status == Succeeded && p.cancelRequested }

// NeedsVoid reports whether the order was cancelled while this charge was
// still unanswered: an earlier delivery's charge faulted, or is in flight on
// another. It must not be charged again; Void with the provider, then Close.
func (p *Payment) NeedsVoid() bool { return p.status == Pending && p.cancelRequested }

// Close settles a charge that NeedsVoid once the provider voided its key:
// REFUNDED (with payment.succeeded and payment.refunded, as for any charged
// and cancelled order) if a charge had been taken and the void gave it back,
// otherwise CANCELLED with no event, as if the cancel had come first. It
// returns false, recording nothing, for a payment that does not need it.
func (p *Payment) Close(refunded bool, now time.Time) bool {
	if !p.NeedsVoid() {
		return false
	}
	if refunded {
		p.Succeed(now)
		return p.Refund(now)
	}
	return p.Voided(now)
}

// Voided records a charge the provider declined because its key was voided
// (ReasonVoided), which only the void of a cancelled order does: nothing
// was taken, so it is CANCELLED with no event, as Close stores it. The
// delivery whose charge was declined may store it before the void's does.
// It returns false, recording nothing, for a payment no longer pending.
func (p *Payment) Voided(now time.Time) bool {
	if p.status != Pending {
		return false
	}
	p.status, p.reason, p.updatedAt = Cancelled, ReasonOrderCancelled, now.UTC()
	return true
}

// Refund records that a succeeded charge was given back because the order
// was cancelled. Only a succeeded payment can be refunded, once; a second
// call returns false and records nothing.
func (p *Payment) Refund(now time.Time) bool {
	if p.status != Succeeded {
		return false
	}
	p.status, p.reason, p.updatedAt = Refunded, ReasonOrderCancelled, now.UTC()
	p.record(RefundedEvent{Payment: p.Snapshot()})
	return true
}

// RefundDeclined records that the provider refused to refund a succeeded
// charge of a cancelled order. The payment stays SUCCEEDED, as the money is
// still taken, with ReasonRefundDeclined: a retry would be refused alike,
// so it is left for a person. It returns false, recording nothing, for a
// payment not SUCCEEDED or already marked.
func (p *Payment) RefundDeclined(now time.Time) bool {
	if p.status != Succeeded || p.reason == ReasonRefundDeclined {
		return false
	}
	p.reason, p.updatedAt = ReasonRefundDeclined, now.UTC()
	return true
}

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
	// CancelRequested: the order was cancelled while the charge was in flight.
	CancelRequested bool
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

func (p *Payment) Snapshot() Snapshot {
	return Snapshot{ID: p.id, OrderID: p.orderID, UserID: p.userID, AmountCents: p.amountCents, Currency: p.currency,
		Status: p.status, Reason: p.reason, CancelRequested: p.cancelRequested, CreatedAt: p.createdAt, UpdatedAt: p.updatedAt}
}

// FromSnapshot rebuilds a stored payment without recording events.
func FromSnapshot(s Snapshot) *Payment {
	return &Payment{id: s.ID, orderID: s.OrderID, userID: s.UserID, amountCents: s.AmountCents, currency: s.Currency,
		status: s.Status, reason: s.Reason, cancelRequested: s.CancelRequested, createdAt: s.CreatedAt, updatedAt: s.UpdatedAt}
}
