package app

import (
	"context"
	"fmt"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

type CancelOrderHandler struct {
	orders order.Repository
	now    func() time.Time
}

// Handle cancels the user's pending order; the repository stores the
// order.cancelled event with it. Another user's order is order.ErrNotFound.
func (h CancelOrderHandler) Handle(ctx context.Context, userID, id string) (order.Snapshot, error) {
	o, err := h.orders.Update(ctx, userID, id, func(o *order.Order) error {
		return o.Cancel(h.now())
	})
	if err != nil {
		return order.Snapshot{}, fmt.Errorf("cancel order: %w", err)
	}
	return o.Snapshot(), nil
}
