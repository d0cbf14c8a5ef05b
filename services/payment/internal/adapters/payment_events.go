package adapters

import (
	"fmt"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// Topic is the Kafka topic for payment results; the key is the order id so
// one order's events stay in one partition.
const Topic = "shanhai.payments"

// Source is the CloudEvents source of this service's events.
const Source = "/shanhai/payment"

// ResultData is the payment.succeeded / payment.failed / payment.refunded
// payload. Currency is the payment's, which is its order.created's: the
// order service checks a result's user and amount against the order, and
// an amount means nothing without its currency (5000 USD cents are no
// 5000 EUR cents). Added later: a consumer reading an older result finds
// none.
type ResultData struct {
	PaymentID   string `json:"payment_id"`
	OrderID     string `json:"order_id"`
	UserID      string `json:"user_id"`
	AmountCents int64  `json:"amount_cents"`
	Currency    string `json:"currency"`
	Reason      string `json:"reason"`
}

// Envelope maps a domain event to its CloudEvent; the subject is the payment id.
func Envelope(e payment.Event) (event.Envelope, error) {
	s := e.PaymentSnapshot()
	env, err := event.New(e.EventType(), Source, s.ID, ResultData{
		PaymentID: s.ID, OrderID: s.OrderID, UserID: s.UserID, AmountCents: s.AmountCents, Currency: s.Currency, Reason: s.Reason,
	})
	if err != nil {
		return event.Envelope{}, fmt.Errorf("envelope %s: %w", e.EventType(), err)
	}
	return env, nil
}
