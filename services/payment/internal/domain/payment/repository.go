package payment

import (
	"context"
	"time"
)

// Repository stores payments. Final payments are written together with their
// events (the outbox) in one transaction.
type Repository interface {
	// Claim stores p if no payment exists for its order yet and returns the
	// stored payment for that order either way: the unique order id makes
	// concurrent or repeated claims converge on one row. A p claimed already
	// final (declined by the rules) is stored with its events in the same
	// transaction; a claim that finds a row stores neither.
	Claim(ctx context.Context, p *Payment) (*Payment, error)
	// Complete stores a final payment and its events, only if the stored row
	// is still PENDING. It reports false when another worker finished first.
	// When it stores, cancelRequested reports a cancel request that a
	// concurrent order.cancelled left on the row (see RequestCancel): the
	// caller then knows a charge it just stored must be refunded.
	Complete(ctx context.Context, p *Payment) (stored, cancelRequested bool, err error)
	// RequestCancel flags the order's payment as cancelled, only if the
	// stored row is still PENDING. It reports false when the charge was
	// answered first; the caller then reads the row again and decides anew.
	RequestCancel(ctx context.Context, p *Payment) (bool, error)
	// SaveRefund stores a refunded payment and its payment.refunded event,
	// only if the stored row is still SUCCEEDED. It reports false when
	// another worker refunded first.
	SaveRefund(ctx context.Context, p *Payment) (bool, error)
	// SaveRefundDeclined stores p's reason (ReasonRefundDeclined: see
	// Payment.RefundDeclined), only if the stored row is still SUCCEEDED
	// and not yet marked. It reports false when another worker refunded or
	// marked it first, so each refusal is stored, and reported, once.
	SaveRefundDeclined(ctx context.Context, p *Payment) (bool, error)
	// Get returns the user's payment; another user's is ErrNotFound.
	Get(ctx context.Context, userID, id string) (*Payment, error)
	// List returns a page of the user's payments and the cursor of the next
	// page ("" when this is the last).
	List(ctx context.Context, userID string, q ListQuery) ([]*Payment, string, error)
	// SaveDeadLetter records a message that was given up on, once per
	// DeadLetter.MessageKey: a dead letter whose key is already recorded
	// (a redelivery of a message whose termination was lost) is not
	// recorded again, and SaveDeadLetter returns ErrDeadLetterRecorded.
	SaveDeadLetter(ctx context.Context, d DeadLetter) error
	// ChargeDeadLettered reports whether a charge of the order (its
	// order.created) was given up on: recorded as a dead letter of an
	// order.created with DeadLetter.OrderID set to orderID (a dead
	// order.cancelled does not count: the order's charge may still be
	// delivered). With no delivery of that message
	// left, the cancel or the delivery that dead-lettered it voids the key
	// (or refunds the charge, when it was taken: see app's GiveUp).
	ChargeDeadLettered(ctx context.Context, orderID string) (bool, error)
	// DeleteSettledDeadLetters deletes at most limit dead letters recorded
	// before the given time whose order's payment is final (FAILED,
	// REFUNDED or CANCELLED: nothing is left to settle for it) and reports
	// how many it deleted. Any other is kept: one that names no order (an
	// invalid message, or one recorded before its order was named), one
	// whose order has no payment, or a PENDING or SUCCEEDED one's.
	DeleteSettledDeadLetters(ctx context.Context, before time.Time, limit int) (int, error)
	// ByOrder returns the order's payment, ErrNotFound if it has none.
	ByOrder(ctx context.Context, orderID string) (*Payment, error)
	// Unsettled returns at most limit payments of cancelled orders that no
	// delivery is left to settle: a PENDING or SUCCEEDED row flagged by the
	// cancel whose order.created was dead-lettered (its void or refund kept
	// faulting), a SUCCEEDED row whose order.cancelled was (its refund
	// kept faulting), and a PENDING row, flagged or not, whose order.created
	// and order.cancelled both were (the cancel's own writes failed on every
	// delivery). A dead letter is terminated, so nothing redelivers
	// it: only these rows are safe to settle from outside a delivery (a
	// flagged row whose order.created is still being delivered may have its
	// charge in flight, on another replica). A SUCCEEDED row whose refund
	// the provider refused (ReasonRefundDeclined) is not returned.
	Unsettled(ctx context.Context, limit int) ([]*Payment, error)
}

// ListQuery selects a page of one user's payments, newest first. Cursor is
// the value a previous page returned; empty starts at the newest.
type ListQuery struct {
	OrderID string // empty means any
	Cursor  string
	Limit   int
}

// DeadLetter is a message that can never be processed, kept with its reason
// so an operator can inspect and replay it.
type DeadLetter struct {
	ID        string
	Consumer  string
	Subject   string
	MsgID     string
	EventID   string
	EventType string
	Reason    string
	// OrderID is the order a message given up on after its retries (an
	// order.created or order.cancelled still faulting on its last
	// delivery) was for, empty for any other message: once its
	// order.created is dead, a cancel of the order must void the charge
	// itself (see ChargeDeadLettered), as no delivery is left to do it;
	// and a settle round finds what either left unsettled (Unsettled).
	OrderID string
	// MessageKey names the stored message given up on (its stream, stream
	// sequence and stored time, and the consumer): a redelivery of it has
	// the same key, so it is recorded once. Empty when the message says
	// nothing of where it is stored; such dead letters are all recorded.
	MessageKey string
	Payload    []byte
	Headers    map[string]string
	CreatedAt  time.Time
}
