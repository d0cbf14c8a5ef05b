package app

import (
	"context"
	"errors"
	"fmt"
	"time"

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
	// RefundDeclined are the payments whose refund the provider refused in
	// this round and whose refusal this round stored: each is reported by
	// one round only, and no later round asks again.
	RefundDeclined []DeclinedRefund
	// Faulted counts the payments this round left because the provider
	// faulted on their void or refund, and Failed those it left because a
	// database statement failed (flagging or storing one), plus one when the
	// round could not list what to settle and so tried nothing. Both wait
	// for the next round; they are counted apart from the returned error so
	// that the service can meter them by cause (an operator's alert needs a
	// series, not a log line).
	Faulted, Failed int
}

// failed counts one payment (or the listing) this round left unsettled
// because of err, by whether the provider or the database failed: the only
// two things a round calls, so the metric's reasons stay bounded.
func (r *SettleResult) failed(err error) {
	if errors.Is(err, payment.ErrProviderFault) {
		r.Faulted++
	} else {
		r.Failed++
	}
}

// DeclinedRefund names a cancelled order's payment left charged because the
// provider refused its refund, for the operator who must settle it.
type DeclinedRefund struct {
	PaymentID, OrderID string
	// Err is the provider's refusal.
	Err error
}

type SettleHandler struct{ d Deps }

// Handle is one settle round: it finds the payments of cancelled orders
// that no delivery is left to settle (payment.Repository.Unsettled: their
// order.created or order.cancelled was dead-lettered with the void or
// refund still faulting) and settles each through the path a delivery would
// have taken: a PENDING row is voided (closeByVoid; flagged first, as the
// cancel would have, if the cancel's own write never landed), a SUCCEEDED
// one refunded (refund). Both are keyed by the payment id and stored under a
// status guard, so rounds running at once on several replicas, or beside a
// replayed dead letter, pay out once and store once. A payment that faults
// again is left for the next round; the errors are returned together, after
// every payment of the batch was tried. A refund the provider refuses is
// not a fault: it is stored on the row (ReasonRefundDeclined), which no
// later round takes, and reported in RefundDeclined by the round that
// stored it. What failed is also counted by cause in Faulted and Failed.
func (h SettleHandler) Handle(ctx context.Context) (SettleResult, error) {
	var res SettleResult
	ps, err := h.d.Payments.Unsettled(ctx, SettleBatch)
	if err != nil {
		if ctx.Err() == nil {
			res.failed(err)
		}
		return res, fmt.Errorf("settle: %w", err)
	}
	var errs []error
	// fail records a payment left unsettled. What the stop cut off (ctx
	// ended) is no failure of the round and is not counted.
	fail := func(p *payment.Payment, err error) {
		if ctx.Err() == nil {
			res.failed(err)
		}
		errs = append(errs, fmt.Errorf("settle order %s: %w", p.OrderID(), err))
	}
	for _, p := range ps {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		switch {
		case p.Status() == payment.Pending && !p.NeedsVoid():
			// Both of the order's messages are dead (Unsettled), so no
			// delivery will flag or charge it: flag it as the cancel would
			// have, so that a void that faults now leaves the row as any
			// flagged one, then void it.
			flagged, err := h.d.Payments.RequestCancel(ctx, p)
			if err != nil {
				fail(p, err)
				continue
			}
			if !flagged {
				continue // another round closed it first
			}
			p.OnCancel()
			stored, err := closeByVoid(ctx, h.d, p)
			if err != nil {
				fail(p, err)
			} else if stored {
				res.Voided++
			}
		case p.NeedsVoid():
			// A void that loses the guard leaves the row to whoever stored
			// it: SUCCEEDED and flagged, it is refunded by the next round.
			stored, err := closeByVoid(ctx, h.d, p)
			if err != nil {
				fail(p, err)
			} else if stored {
				res.Voided++
			}
		case p.Status() == payment.Succeeded:
			_, stored, err := refund(ctx, h.d, p)
			switch {
			case errors.Is(err, payment.ErrRefundDeclined):
				d, err := h.refundDeclined(ctx, p, err)
				if err != nil {
					fail(p, err)
				} else if d != nil {
					res.RefundDeclined = append(res.RefundDeclined, *d)
				}
			case err != nil:
				fail(p, err)
			case stored:
				res.Refunded++
			}
		}
	}
	return res, errors.Join(errs...)
}

// refundDeclined stores the provider's refusal to refund p on the row, so
// that no later round asks again, and returns it for the caller to report,
// or nil when another round (or a refund) got to the row first.
func (h SettleHandler) refundDeclined(ctx context.Context, p *payment.Payment, refusal error) (*DeclinedRefund, error) {
	p = payment.FromSnapshot(p.Snapshot())
	if !p.RefundDeclined(h.d.Now()) {
		return nil, nil
	}
	stored, err := h.d.Payments.SaveRefundDeclined(ctx, p)
	if err != nil || !stored {
		return nil, err
	}
	return &DeclinedRefund{PaymentID: p.ID(), OrderID: p.OrderID(), Err: refusal}, nil
}

// PurgeBatch is how many dead letters one statement of PurgeDeadLetters
// deletes at most.
const PurgeBatch = 500

// PurgeDeadLetters deletes the settled dead letters older than retention
// (payment.Repository.DeleteSettledDeadLetters), a batch at a time until a
// batch comes back short, and reports how many it deleted. Without it every
// settle round read every dead letter that ever named an order. The ones
// that still mark something to settle are kept whatever their age.
func (h SettleHandler) PurgeDeadLetters(ctx context.Context, retention time.Duration) (int, error) {
	before := h.d.Now().Add(-retention)
	total := 0
	for {
		n, err := h.d.Payments.DeleteSettledDeadLetters(ctx, before, PurgeBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("purge dead letters: %w", err)
		}
		if n < PurgeBatch {
			return total, nil
		}
	}
}
