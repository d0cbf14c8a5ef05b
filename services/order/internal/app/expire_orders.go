package app

import (
	"context"
	"fmt"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// ExpireBatch is how many orders one transaction of ExpireOrders cancels at
// most. It bounds how long the batch's row locks are held (a payment result
// for one of them waits for the commit) and the size of the transaction;
// a backlog (after a long payment outage) is worked through a batch at a
// time within one round.
const ExpireBatch = 100

type ExpireOrdersHandler struct {
	orders  order.Repository
	now     func() time.Time
	timeout time.Duration
}

// Handle cancels every order still PENDING more than the timeout after it
// was placed (order.Order.Expire), a batch per transaction, and returns how
// many it cancelled. Each gets the order.cancelled a user's cancel emits,
// so payment voids a charge it flagged or refunds one that succeeded late;
// a late payment.succeeded then leaves the order CANCELLED. An order whose
// payment result is being applied meanwhile is skipped and left to it
// (order.Repository.ExpirePending). It stops after a batch that cancelled
// fewer than ExpireBatch: the rest, if any, were skipped and wait for the
// next round. A zero timeout expires nothing (the configuration refuses
// one; only a Deps built by hand has it).
func (h ExpireOrdersHandler) Handle(ctx context.Context) (int, error) {
	if h.timeout <= 0 {
		return 0, nil
	}
	total := 0
	for {
		now := h.now()
		cutoff := now.Add(-h.timeout)
		n, err := h.orders.ExpirePending(ctx, cutoff, ExpireBatch, func(o *order.Order) error {
			o.Expire(cutoff, now)
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("expire orders pending since before %s: %w", cutoff.Format(time.RFC3339), err)
		}
		if n < ExpireBatch {
			return total, nil
		}
	}
}
