package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// ConsumerName is the dedup namespace for payment results applied by this
// service; it matches the JetStream durable name.
const ConsumerName = "order"

// ApplyPayment is a payment.succeeded or payment.failed event. UserID,
// AmountCents and Currency are whom the payment says it charged and how
// much: payment charges the user, total and currency of order.created, so
// anything else is corrupt. Currency is empty in a result written before
// payment carried it: then the user and amount alone are held.
type ApplyPayment struct {
	EventID     string
	OrderID     string
	UserID      string
	AmountCents int64
	Currency    string
	Outcome     order.PaymentOutcome
}

// ApplyResult says what happened: Duplicate when the event was seen before,
// Changed when the order moved state, Contradicts when it had settled
// otherwise (order.Order.Contradicts). Status and PaymentID are the order's
// after the result, for whoever reports it (not set for a duplicate).
type ApplyResult struct {
	Duplicate   bool
	Changed     bool
	Contradicts bool
	Status      order.Status
	PaymentID   string
}

type ApplyPaymentHandler struct {
	orders order.Repository
	now    func() time.Time
}

// Handle applies a payment result at most once per event id. The state
// machine in the aggregate makes a second, different result for the same
// order (a redelivered or reordered event) a no-op. A result for another
// user, amount or currency is order.ErrResultMismatch and changes nothing: it
// must not show another user's payment on this order, nor mark it paid by
// another sum (5000 cents of another currency are another sum).
func (h ApplyPaymentHandler) Handle(ctx context.Context, cmd ApplyPayment) (ApplyResult, error) {
	var res ApplyResult
	applied, err := h.orders.ApplyOnce(ctx, ConsumerName, cmd.EventID, cmd.OrderID, func(o *order.Order) error {
		if o.UserID() != cmd.UserID || o.TotalCents() != cmd.AmountCents || (cmd.Currency != "" && cmd.Currency != o.Currency()) {
			return fmt.Errorf("%w: the result is for user %q and %d cents of %q, the order is user %q's for %d cents of %q",
				order.ErrResultMismatch, cmd.UserID, cmd.AmountCents, cmd.Currency, o.UserID(), o.TotalCents(), o.Currency())
		}
		res.Contradicts = o.Contradicts(cmd.Outcome)
		res.Changed = o.ApplyPayment(cmd.Outcome, h.now())
		res.Status, res.PaymentID = o.Status(), o.PaymentID()
		return nil
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("apply payment %s to order %s: %w", cmd.EventID, cmd.OrderID, err)
	}
	if !applied {
		// fn may have run on a read that then lost to the first delivery
		// (OrderGorm.ApplyOnce): what it set describes nothing stored.
		return ApplyResult{Duplicate: true}, nil
	}
	return res, nil
}

// RefundResult says whether a refund contradicts the order: Contradicts
// when the order is not CANCELLED. Duplicate when the event was seen
// before: it was checked then, and its alarm, if any, raised then. Status
// and PaymentID are the order's (not set for a duplicate).
type RefundResult struct {
	Duplicate   bool
	Contradicts bool
	Status      order.Status
	PaymentID   string
}

// Refunded checks a payment.refunded against its order, changing nothing.
// Payment refunds a charge only for an order that was cancelled, and the
// order is CANCELLED before its order.cancelled is sent, so a refund of an
// order in any other state means one shown paid (and shipped) whose money
// went back, or a forged result: the caller tells an operator. That refund
// is recorded as processed (ApplyOnce, the same dedup as a payment
// result), so that its redelivery is a duplicate and the alarm is raised
// once per refund, not once per delivery. The saga's own refund, of a
// CANCELLED order, is informational and recorded nowhere, as before: a
// redelivery of it says nothing either. Another user's or an unknown order
// is order.ErrNotFound.
func (h ApplyPaymentHandler) Refunded(ctx context.Context, cmd ApplyPayment) (RefundResult, error) {
	var res RefundResult
	applied, err := h.orders.ApplyOnce(ctx, ConsumerName, cmd.EventID, cmd.OrderID, func(o *order.Order) error {
		if o.UserID() != cmd.UserID {
			return order.ErrNotFound // another user's order, as Get would say
		}
		res = RefundResult{Contradicts: o.Status() != order.Cancelled, Status: o.Status(), PaymentID: o.PaymentID()}
		if !res.Contradicts {
			return errInformational // nothing to record: ApplyOnce writes nothing on an error
		}
		return nil
	})
	if errors.Is(err, errInformational) {
		return res, nil
	}
	if err != nil {
		return RefundResult{}, fmt.Errorf("check refund %s of order %s: %w", cmd.EventID, cmd.OrderID, err)
	}
	if !applied {
		// fn may have run on a read that then lost to the first delivery
		// (OrderGorm.ApplyOnce): that delivery reports it.
		return RefundResult{Duplicate: true}, nil
	}
	return res, nil
}

// errInformational ends Refunded's ApplyOnce without recording the event:
// the refund of a CANCELLED order, which changes nothing and alarms no one.
var errInformational = errors.New("informational refund")
