package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// ChargeOrder is an order.created event.
type ChargeOrder struct {
	OrderID    string
	UserID     string
	TotalCents int64
	Currency   string
}

// ChargeResult says what the handler did; Duplicate means the order had
// already been answered and nothing was charged or emitted.
type ChargeResult struct {
	PaymentID string
	Status    payment.Status
	Reason    string
	Duplicate bool
	// Voided: the order was cancelled while its charge was unanswered, and
	// this delivery settled it with a void instead of charging (see void).
	Voided bool
	// Refunded: the order was cancelled and this delivery stored the refund
	// of its charge: one it made itself while the cancel landed, or one an
	// earlier or concurrent delivery made and did not refund.
	Refunded bool
}

type ChargeOrderHandler struct{ d Deps }

// Handle charges an order at most once:
//
//  1. decline rules, decided once: a declined order is claimed straight as
//     FAILED, its payment.failed stored with the row;
//  2. claim: one payment row per order (unique order id); if the stored row
//     is already final, this is a redelivery: do nothing;
//  3. a PENDING row passed the rules when it was claimed, by this delivery
//     or an earlier one: call the provider, keyed by the payment id so a
//     retry after a crash is answered, not charged again. The rules are not
//     asked again: an earlier delivery may have been charged before it
//     failed to store the answer, and a rule changed since (etcd) would
//     store FAILED over money taken, which nothing refunds;
//  4. store the final state and its event in one transaction, only if the
//     row is still PENDING;
//  5. if order.cancelled flagged the row while the charge was in flight
//     (see CancelOrderHandler), refund the charge just stored. A
//     redelivery that finds the row SUCCEEDED and flagged (this worker
//     died, or the refund faulted and the message was nakked) refunds too.
//
// A PENDING row the cancel flagged (an earlier delivery's charge faulted,
// or is still in flight on another delivery) is not charged again: its key
// is voided with the provider instead (see void).
//
// A CANCELLED row (the cancel claimed the order first) is final: nothing is
// charged. The row is not re-read before the provider call: a cancel that
// lands after the claim is caught by step 5, so the common path keeps its
// round trips.
//
// A provider fault returns an error wrapping payment.ErrProviderFault (retry
// later); an event that can never be charged wraps payment.ErrInvalid.
func (h ChargeOrderHandler) Handle(ctx context.Context, cmd ChargeOrder) (ChargeResult, error) {
	fresh, err := payment.New(h.d.NewID(), cmd.OrderID, cmd.UserID, cmd.TotalCents, cmd.Currency, h.d.Now())
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %q: %w", cmd.OrderID, err)
	}
	if reason := h.d.Rules().Decline(fresh); reason != "" {
		fresh.Fail(reason, h.d.Now())
	}
	p, err := h.d.Payments.Claim(ctx, fresh)
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: claim: %w", cmd.OrderID, err)
	}
	if err := p.Matches(cmd.UserID, cmd.TotalCents, cmd.Currency); err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: %w", cmd.OrderID, err)
	}
	if p.ID() == fresh.ID() && p.Final() {
		return result(p, false), nil // declined, stored by the claim
	}
	if p.Final() {
		if p.NeedsRefund() {
			return h.refund(ctx, p)
		}
		return result(p, true), nil
	}
	if p.NeedsVoid() {
		return h.void(ctx, fresh, p)
	}
	ans, err := h.d.Provider.Charge(ctx, payment.Charge{IdempotencyKey: p.ID(), AmountCents: p.AmountCents(), Currency: p.Currency()})
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: %w", cmd.OrderID, fault(err))
	}
	switch {
	case ans.Approved:
		p.Succeed(h.d.Now())
	case ans.Reason == payment.ReasonVoided:
		// Another delivery voided the key first (the order was cancelled):
		// stored FAILED, the cancelled order would get a payment.failed and
		// a status the void's own delivery never stores.
		p.Voided(h.d.Now())
	default:
		p.Fail(ans.Reason, h.d.Now())
	}
	// The answer is in hand and money may have been taken: stored even if a
	// stop cut the handler off meanwhile (for at most AnswerGrace after). On
	// the cut-off context the store failed, the row stayed PENDING with no
	// event, and on the message's last allowed delivery no redelivery was
	// left to store it.
	sctx, cancel := Outlive(ctx, AnswerGrace)
	defer cancel()
	stored, cancelled, err := h.d.Payments.Complete(sctx, p)
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: complete: %w", cmd.OrderID, err)
	}
	if stored && cancelled && p.Status() == payment.Succeeded {
		return h.refund(ctx, p)
	}
	if !stored && ans.Approved {
		return h.approvedBehindAClose(ctx, p)
	}
	res := result(p, !stored)
	res.Voided = stored && p.Status() == payment.Cancelled
	return res, nil
}

// void settles a PENDING row the cancel flagged without charging it. The
// key is voided rather than the row simply closed: the earlier charge may
// have been taken with its answer lost (a timeout, a crash before Complete),
// and only the provider knows; a charge still in flight elsewhere is
// declined by the provider once the key is void. Concurrent deliveries void
// alike (the provider answers a key once) and the row's PENDING guard
// stores one of them. One that loses the guard reads the row again: a
// charge in flight elsewhere stored its answer first, CANCELLED if it reached
// the provider after the void, or SUCCEEDED and flagged if it was taken
// before, which this delivery then refunds as any redelivery would.
func (h ChargeOrderHandler) void(ctx context.Context, fresh, p *payment.Payment) (ChargeResult, error) {
	stored, err := closeByVoid(ctx, h.d, p)
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: order was cancelled: %w", p.OrderID(), err)
	}
	if stored {
		res := result(p, false)
		res.Voided = true
		return res, nil
	}
	cur, err := h.d.Payments.Claim(ctx, fresh)
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: read after void: %w", p.OrderID(), err)
	}
	if cur.NeedsRefund() {
		return h.refund(ctx, cur)
	}
	return result(cur, true), nil
}

// approvedBehindAClose is a charge this delivery had approved whose store
// lost the PENDING guard: another delivery closed the row first. A
// CANCELLED row says nothing was taken under the key, because the void of
// another delivery found no charge. A processor whose keys hold everywhere
// would then have declined this charge; one whose memory is its own
// process's (the simulated provider, with two or more replicas) approved
// it, and this delivery alone knows. So it voids the key on its own
// provider, which gives the charge back (a repeated void is answered from
// memory). Any other row (SUCCEEDED, REFUNDED) already accounts for the
// charge under this key. A fault is returned for the log and the retry
// count, but the redelivery finds a final row and does nothing: the charge
// then stays taken, as it did before this check.
func (h ChargeOrderHandler) approvedBehindAClose(ctx context.Context, p *payment.Payment) (ChargeResult, error) {
	cur, err := h.d.Payments.ByOrder(ctx, p.OrderID())
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: read after losing the store: %w", p.OrderID(), err)
	}
	if cur.Status() == payment.Cancelled {
		if _, err := h.d.Provider.Void(ctx, payment.Void{IdempotencyKey: p.ID(), AmountCents: p.AmountCents(), Currency: p.Currency()}); err != nil {
			return ChargeResult{}, fmt.Errorf("charge order %s: void the charge approved behind its CANCELLED row: %w", p.OrderID(), fault(err))
		}
	}
	return result(cur, true), nil
}

// GiveUp settles what the order's order.created leaves behind once it has
// been dead-lettered (its charge, or the refund of a cancelled order's
// charge, still faulting on the last delivery), as the next delivery would
// have done: a PENDING row the cancel flagged is voided, and a SUCCEEDED
// one is refunded (the refund path, guarded by status SUCCEEDED: the
// provider pays a key out once and one refund is stored). The cancel that
// flagged that row found it PENDING and left the refund to the charge's
// deliveries, and none is left.
// The cancel voids by itself only when it finds the dead letter
// (CancelOrderHandler); one that landed after the last delivery failed but
// before its dead letter was recorded found none and only flagged the row,
// and no delivery is left to void it. The cancel flags, then looks for the
// dead letter; the caller records the dead letter, then calls this: of the
// two, the one that runs last sees the other's write. Both may void, which
// the provider answers once and the row's PENDING guard stores once.
//
// A row that is not flagged, or no row at all, is left alone: nothing
// cancelled the order. A void or refund fault returns an error wrapping
// payment.ErrProviderFault; the row then stays flagged (PENDING or
// SUCCEEDED) until a settle round (SettleHandler) voids or refunds it.
func (h ChargeOrderHandler) GiveUp(ctx context.Context, orderID string) (ChargeResult, error) {
	p, err := h.d.Payments.ByOrder(ctx, orderID)
	if errors.Is(err, payment.ErrNotFound) {
		return ChargeResult{Duplicate: true}, nil
	}
	if err != nil {
		return ChargeResult{}, fmt.Errorf("give up on order %s: %w", orderID, err)
	}
	if p.NeedsRefund() {
		return h.refund(ctx, p)
	}
	if !p.NeedsVoid() {
		return result(p, true), nil
	}
	// The claim void reads the row back with, should its store lose the
	// guard: the row exists, so it only reads.
	fresh, err := payment.New(h.d.NewID(), p.OrderID(), p.UserID(), p.AmountCents(), p.Currency(), h.d.Now())
	if err != nil {
		return ChargeResult{}, fmt.Errorf("give up on order %s: %w", orderID, err)
	}
	return h.void(ctx, fresh, p)
}

func (h ChargeOrderHandler) refund(ctx context.Context, p *payment.Payment) (ChargeResult, error) {
	r, stored, err := refund(ctx, h.d, p)
	if err != nil {
		return ChargeResult{}, fmt.Errorf("charge order %s: order was cancelled: %w", p.OrderID(), err)
	}
	res := result(r, !stored)
	res.Refunded = stored
	return res, nil
}

// fault marks any provider error as retryable: a charge or void the provider
// refused without a business answer is retried like a timeout, on the
// message's back-off, and dead-lettered on its last delivery.
func fault(err error) error {
	if errors.Is(err, payment.ErrProviderFault) {
		return err
	}
	return fmt.Errorf("%w: %w", payment.ErrProviderFault, err)
}

func result(p *payment.Payment, dup bool) ChargeResult {
	return ChargeResult{PaymentID: p.ID(), Status: p.Status(), Reason: p.Reason(), Duplicate: dup}
}
