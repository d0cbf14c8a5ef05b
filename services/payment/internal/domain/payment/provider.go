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

// Provider charges money.
type Provider interface {
	Charge(ctx context.Context, c Charge) (Answer, error)
}

// ErrProviderFault marks a transient provider failure.
var ErrProviderFault = errors.New("payment provider fault")
