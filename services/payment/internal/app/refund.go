package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// refund gives a succeeded charge back and stores it REFUNDED with its
// payment.refunded event. Both the cancel path (the charge had already
// succeeded) and the charge path (a cancel flagged the charge while it was
// in flight) come here, possibly at once for the same payment: the provider
// refunds a payment id at most once and SaveRefund stores only over a
// SUCCEEDED row, so the second caller pays nothing out and emits nothing.
// It returns the payment as stored and whether this call stored it.
func refund(ctx context.Context, d Deps, charged *payment.Payment) (*payment.Payment, bool, error) {
	// A fresh aggregate: charged may still carry its payment.succeeded event,
	// which must not be written to the outbox a second time.
	p := payment.FromSnapshot(charged.Snapshot())
	if p.Status() != payment.Succeeded {
		return p, false, nil
	}
	err := d.Provider.Refund(ctx, payment.Refund{IdempotencyKey: p.ID(), AmountCents: p.AmountCents(), Currency: p.Currency()})
	if errors.Is(err, payment.ErrProviderFault) {
		return p, false, fmt.Errorf("refund payment %s: %w", p.ID(), err)
	}
	if err != nil {
		// A refusal is the provider's answer, not a fault. A delivery still
		// retries it like one (its error is not ErrInvalid), on the back-off
		// until the message is dead-lettered: the answer may come from a
		// replica whose memory is not the charging one's. The settle round
		// then stores it instead of asking again (SettleHandler).
		return p, false, fmt.Errorf("refund payment %s: %w: %w", p.ID(), payment.ErrRefundDeclined, err)
	}
	p.Refund(d.Now())
	stored, err := d.Payments.SaveRefund(ctx, p)
	if err != nil {
		return p, false, fmt.Errorf("refund payment %s: store: %w", p.ID(), err)
	}
	return p, stored, nil
}
