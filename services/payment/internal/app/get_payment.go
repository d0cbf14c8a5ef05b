package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

type GetPaymentHandler struct{ payments payment.Repository }

// Handle returns the user's payment; another user's is payment.ErrNotFound.
func (h GetPaymentHandler) Handle(ctx context.Context, userID, id string) (payment.Snapshot, error) {
	p, err := h.payments.Get(ctx, userID, id)
	if err != nil {
		return payment.Snapshot{}, fmt.Errorf("get payment: %w", err)
	}
	return p.Snapshot(), nil
}
