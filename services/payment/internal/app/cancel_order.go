package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// CancelOrder is an order.cancelled event.
type CancelOrder struct {
	OrderID    string
	UserID     string
	TotalCents int64
	Currency   string
}

// CancelResult says what the cancellation did to the order's payment.
type CancelResult struct {
	PaymentID string
	// Status after the cancel: CANCELLED (claimed before any charge),
	// REFUNDED, PENDING (flagged, the charging path will refund) or FAILED.
	Status payment.Status
	// Duplicate: nothing was left to do (a redelivery, a failed charge).
	Duplicate bool
}

type CancelOrderHandler struct{ d Deps }

// Handle makes sure a cancelled order ends up not charged. The order's one
// payment row (unique order id) is the arbiter between order.created and
// order.cancelled, which the consumer's pool may handle in either order or
// at once:
//
//   - no row yet: claim it as CANCELLED; a later order.created finds a
//     final row and charges nothing;
//   - SUCCEEDED: refund through the provider (keyed by payment id) and
//     store REFUNDED with payment.refunded in one transaction;
//   - PENDING, a charge in flight: set cancel_requested on the row, guarded
//     by status PENDING. The charging path's final write returns that flag
//     in the same statement that stores SUCCEEDED, and refunds when it is
//     set; if that worker dies first, its order.created is redelivered (it
//     was never acked), finds SUCCEEDED with the flag and refunds then. If
//     the guard misses, the charge was answered meanwhile: read again.
//     Unless the order's order.created was dead-lettered: then no delivery
//     is left to void the flagged row, and the cancel voids it (voidGivenUp);
//   - FAILED, REFUNDED, CANCELLED: nothing.
//
// Flagging rather than waiting for the charge keeps the cancel from
// depending on the charge finishing within its own retry budget, and
// refunding after the charge rather than aborting it keeps the provider
// call outside any lock: the charge may already be taken when the flag
// lands, so only a refund can undo it.
func (h CancelOrderHandler) Handle(ctx context.Context, cmd CancelOrder) (CancelResult, error) {
	fresh, err := payment.NewCancelled(h.d.NewID(), cmd.OrderID, cmd.UserID, cmd.TotalCents, cmd.Currency, h.d.Now())
	if err != nil {
		return CancelResult{}, fmt.Errorf("cancel order %q: %w", cmd.OrderID, err)
	}
	// A status only moves forward (PENDING to final, SUCCEEDED to
	// REFUNDED), so a missed guard is retried at most once or twice.
	for range 3 {
		p, err := h.d.Payments.Claim(ctx, fresh)
		if err != nil {
			return CancelResult{}, fmt.Errorf("cancel order %s: claim: %w", cmd.OrderID, err)
		}
		if err := p.Matches(cmd.UserID, cmd.TotalCents, cmd.Currency); err != nil {
			return CancelResult{}, fmt.Errorf("cancel order %s: %w", cmd.OrderID, err)
		}
		if p.ID() == fresh.ID() {
			return CancelResult{PaymentID: p.ID(), Status: payment.Cancelled}, nil
		}
		switch p.OnCancel() {
		case payment.CancelNothing:
			return CancelResult{PaymentID: p.ID(), Status: p.Status(), Duplicate: true}, nil
		case payment.CancelRefund:
			r, stored, err := refund(ctx, h.d, p)
			if err != nil {
				return CancelResult{}, fmt.Errorf("cancel order %s: %w", cmd.OrderID, err)
			}
			return CancelResult{PaymentID: r.ID(), Status: r.Status(), Duplicate: !stored}, nil
		case payment.CancelFlag:
			flagged, err := h.d.Payments.RequestCancel(ctx, p)
			if err != nil {
				return CancelResult{}, fmt.Errorf("cancel order %s: %w", cmd.OrderID, err)
			}
			if !flagged {
				continue
			}
			r, settled, err := h.voidGivenUp(ctx, p)
			if err != nil {
				return CancelResult{}, fmt.Errorf("cancel order %s: %w", cmd.OrderID, err)
			}
			if settled {
				return r, nil
			}
		}
	}
	return CancelResult{}, fmt.Errorf("cancel order %s: payment kept changing under the cancel", cmd.OrderID)
}

// voidGivenUp runs after the cancel flagged p, PENDING. The flag leaves the
// void to the next delivery of the order's order.created, but one that was
// dead-lettered (its charge still faulting on its last delivery) has none:
// the row would stay PENDING for good, and the key unvoided although a
// fault may have been a timeout after the processor took the money. So when
// the order has such a dead letter, the cancel voids the key itself. Only
// then: a cancel that voided every flagged row would void a charge in flight
// on another replica, which the simulated provider (its memory is each
// replica's own) would neither decline nor refund; the charging replica
// sees the flag and refunds instead. A dead letter recorded after this look
// is handled by the delivery that records it (ChargeOrderHandler.GiveUp).
//
// settled is false when the row was answered meanwhile (it is no longer
// PENDING, or another void stored first): the caller reads it again.
func (h CancelOrderHandler) voidGivenUp(ctx context.Context, p *payment.Payment) (r CancelResult, settled bool, err error) {
	flaggedOnly := CancelResult{PaymentID: p.ID(), Status: payment.Pending}
	dead, err := h.d.Payments.ChargeDeadLettered(ctx, p.OrderID())
	if err != nil {
		return CancelResult{}, false, err
	}
	if !dead {
		return flaggedOnly, true, nil
	}
	// Read back with the flag this cancel (or an earlier one) set.
	flagged, err := h.d.Payments.ByOrder(ctx, p.OrderID())
	if err != nil {
		return CancelResult{}, false, err
	}
	if !flagged.NeedsVoid() {
		return CancelResult{}, false, nil
	}
	stored, err := closeByVoid(ctx, h.d, flagged)
	if err != nil || !stored {
		return CancelResult{}, false, err
	}
	return CancelResult{PaymentID: flagged.ID(), Status: flagged.Status()}, true, nil
}
