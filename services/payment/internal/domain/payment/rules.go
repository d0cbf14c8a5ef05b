package payment

import "fmt"

// Rules are deterministic decline rules applied before the provider is asked.
// They make the failure path of the saga reproducible: the same order is
// always declined for the same reason, whatever the provider's mood.
type Rules struct {
	// MaxAmountCents declines any charge above it; zero disables the rule.
	MaxAmountCents int64
	// Currencies the merchant accepts; empty accepts any.
	Currencies []string
}

// Decline reasons as they appear in payment.failed events.
const (
	ReasonOverLimit   = "amount_over_limit"
	ReasonCurrency    = "currency_not_supported"
	ReasonCardDecline = "card_declined"
	// ReasonVoided: the charge reached the provider after its key was
	// voided (see Void).
	ReasonVoided = "charge_voided"
)

// Decline returns a reason when the payment must be declined without
// charging, or "" when it may go to the provider.
func (r Rules) Decline(p *Payment) string {
	if r.MaxAmountCents > 0 && p.amountCents > r.MaxAmountCents {
		return ReasonOverLimit
	}
	if len(r.Currencies) > 0 {
		for _, c := range r.Currencies {
			if c == p.currency {
				return ""
			}
		}
		return ReasonCurrency
	}
	return ""
}

// String is for logs.
func (r Rules) String() string {
	return fmt.Sprintf("max=%d currencies=%v", r.MaxAmountCents, r.Currencies)
}
