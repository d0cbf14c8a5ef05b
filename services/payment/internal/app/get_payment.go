package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

type GetPaymentHandler struct{ payments payment.Repository }

// Handle returns the user's payment; another user's is payment.ErrNotFound.
func (h GetPaymentHandler) Handle(ctx context.Context, userID, id string) (payment.Snapshot, error) {
	// Not asked of the database: PostgreSQL's text holds no NUL, and the
	// query would fail (a 500) for a caller who simply has no payment.
	if !payment.PossibleUserID(userID) {
		return payment.Snapshot{}, fmt.Errorf("get payment: %w", payment.ErrNotFound)
	}
	p, err := h.payments.Get(ctx, userID, id)
	if err != nil {
		return payment.Snapshot{}, fmt.Errorf("get payment: %w", err)
	}
	return p.Snapshot(), nil
}
