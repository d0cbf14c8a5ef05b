package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// SettleBatch is how many unsettled payments one round takes on at most;
// the rest wait for the next round. Each costs a provider call, and a round
// holds no lock, so a large backlog is worked through a batch at a time.
const SettleBatch = 100

// SettleResult counts what one settle round stored: the voids and refunds
// this round's writes won (another replica's round, or a replayed dead
// letter, may store a payment this round also asked the provider about).
type SettleResult struct {
	Voided, Refunded int
}

type SettleHandler struct{ d Deps }

// Handle is one settle round: it finds the payments of cancelled orders
// that no delivery is left to settle (payment.Repository.Unsettled: their
// order.created or order.cancelled was dead-lettered with the void or
// refund still faulting) and settles each through the path a delivery would
// have taken: a flagged PENDING row is voided (closeByVoid), a SUCCEEDED one
// refunded (refund). Both are keyed by the payment id and stored under a
// status guard, so rounds running at once on several replicas, or beside a
// replayed dead letter, pay out once and store once. A payment that faults
// again is left for the next round; the errors are returned together, after
// every payment of the batch was tried.
func (h SettleHandler) Handle(ctx context.Context) (SettleResult, error) {
	ps, err := h.d.Payments.Unsettled(ctx, SettleBatch)
	if err != nil {
		return SettleResult{}, fmt.Errorf("settle: %w", err)
	}
	var res SettleResult
	var errs []error
	for _, p := range ps {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		switch {
		case p.NeedsVoid():
			// A void that loses the guard leaves the row to whoever stored
			// it: SUCCEEDED and flagged, it is refunded by the next round.
			stored, err := closeByVoid(ctx, h.d, p)
			if err != nil {
				errs = append(errs, fmt.Errorf("settle order %s: %w", p.OrderID(), err))
			} else if stored {
				res.Voided++
			}
		case p.Status() == payment.Succeeded:
			_, stored, err := refund(ctx, h.d, p)
			if err != nil {
				errs = append(errs, fmt.Errorf("settle order %s: %w", p.OrderID(), err))
			} else if stored {
				res.Refunded++
			}
		}
	}
	return res, errors.Join(errs...)
}
