package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

type GetOrderHandler struct{ orders order.Repository }

// Handle returns the user's order; another user's is order.ErrNotFound.
func (h GetOrderHandler) Handle(ctx context.Context, userID, id string) (order.Snapshot, error) {
	o, err := h.orders.Get(ctx, userID, id)
	if err != nil {
		return order.Snapshot{}, fmt.Errorf("get order: %w", err)
	}
	return o.Snapshot(), nil
}
