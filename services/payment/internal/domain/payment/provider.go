package payment

import (
	"context"
	"errors"
)

// Charge is one request to the payment provider. IdempotencyKey is the
// payment id: a provider that sees the same key twice answers with the first
// result instead of charging again, which is what keeps a crash between
// "provider said yes" and "we committed" from double-charging.
type Charge struct {
	IdempotencyKey string
	AmountCents    int64
	Currency       string
}

// Answer is the provider's verdict. Declined is a final business answer; a
// returned error is a fault (timeout, 5xx) that is worth retrying later.
type Answer struct {
	Approved bool
	Reason   string
}

// Refund gives a succeeded charge back. IdempotencyKey is the payment id,
// the charge's own key: a provider refunds one key at most once, so a
// repeated or concurrent refund of the same payment is answered, not paid
// out again.
type Refund struct {
	IdempotencyKey string
	AmountCents    int64
	Currency       string
}

// Void closes a charge's key for good without charging: money a charge
// under the key took is given back, and a charge under it that reaches the
// provider later is declined (ReasonVoided). It settles an order cancelled
// while its charge's outcome is unknown (the charge faulted, timed out or its
// answer was never stored, or it is still in flight on another delivery)
// without charging it again; a refund cannot, as it only undoes a charge
// known to have been made. IdempotencyKey is the payment id.
type Void struct {
	IdempotencyKey string
	AmountCents    int64
	Currency       string
}

// Provider charges money and gives it back. Refund and Void return an error
// wrapping ErrProviderFault for a transient failure worth retrying; any
// other error from Refund is a refusal, the provider's final answer. Void
// reports whether a charge had been taken under the key (and so was
// refunded).
type Provider interface {
	Charge(ctx context.Context, c Charge) (Answer, error)
	Refund(ctx context.Context, r Refund) error
	Void(ctx context.Context, v Void) (refunded bool, err error)
}

// ErrProviderFault marks a transient provider failure.
var ErrProviderFault = errors.New("payment provider fault")
