package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// MaxList bounds a listing. An order has one payment, so the bound only
// matters for the unfiltered list.
const MaxList = 100

type ListPaymentsHandler struct{ payments payment.Repository }

// Handle lists the user's own payments, optionally for one order. Another
// user's order id simply yields an empty list.
func (h ListPaymentsHandler) Handle(ctx context.Context, userID, orderID string) ([]payment.Snapshot, error) {
	ps, err := h.payments.List(ctx, userID, orderID, MaxList)
	if err != nil {
		return nil, fmt.Errorf("list payments: %w", err)
	}
	out := make([]payment.Snapshot, len(ps))
	for i, p := range ps {
		out[i] = p.Snapshot()
	}
	return out, nil
}
