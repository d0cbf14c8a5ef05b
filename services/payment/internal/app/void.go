package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// closeByVoid voids the key of a payment the cancel flagged while its charge
// was unanswered (p.NeedsVoid) and stores the row as the provider answers:
// CANCELLED when nothing was taken, REFUNDED (payment.succeeded and
// payment.refunded) when a charge under the key was and the void gave it
// back, guarded by status PENDING. It reports whether this call stored the
// row: false when another delivery, or a charge still in flight, stored it
// first, and the caller reads it again. Both the charge path (a redelivery
// finding the flag) and the cancel path (an order.created given up on, so
// no redelivery will come) come here.
func closeByVoid(ctx context.Context, d Deps, p *payment.Payment) (bool, error) {
	refunded, err := d.Provider.Void(ctx, payment.Void{IdempotencyKey: p.ID(), AmountCents: p.AmountCents(), Currency: p.Currency()})
	if err != nil {
		return false, fmt.Errorf("void payment %s: %w", p.ID(), fault(err))
	}
	p.Close(refunded, d.Now())
	stored, _, err := d.Payments.Complete(ctx, p)
	if err != nil {
		return false, fmt.Errorf("close voided payment %s: %w", p.ID(), err)
	}
	return stored, nil
}
