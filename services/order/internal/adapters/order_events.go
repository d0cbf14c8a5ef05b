package adapters

import (
	"fmt"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// Topic is the Kafka topic (and JetStream subject) for order events.
const Topic = "shanhai.orders"

// Source is the CloudEvents source of every event this service emits.
const Source = "/shanhai/order"

// OrderCreatedData is the order.created payload (docs/conventions.md).
type OrderCreatedData struct {
	OrderID    string     `json:"order_id"`
	UserID     string     `json:"user_id"`
	TotalCents int64      `json:"total_cents"`
	Currency   string     `json:"currency"`
	Items      []ItemData `json:"items"`
}

type ItemData struct {
	SKU            string `json:"sku"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
}

// OrderCancelledData is the order.cancelled payload. Reason is why the order
// was cancelled (order.CancelReason: "user" or "payment_timeout"), so a
// consumer can tell a user's cancel from the saga giving up without asking
// the order service. Every cancel has one, but events written before it
// existed do not: a consumer reads a missing reason as "user", as the
// service reads its cancel_reason column (migration 0003).
type OrderCancelledData struct {
	OrderID    string `json:"order_id"`
	UserID     string `json:"user_id"`
	TotalCents int64  `json:"total_cents"`
	Currency   string `json:"currency"`
	Reason     string `json:"reason"`
}

// Envelope maps a domain event to its CloudEvent; the subject is the order id.
func Envelope(e order.Event) (event.Envelope, error) {
	var data any
	switch e := e.(type) {
	case order.Created:
		d := OrderCreatedData{OrderID: e.Order.ID, UserID: e.Order.UserID, TotalCents: e.Order.TotalCents, Currency: e.Order.Currency,
			Items: make([]ItemData, len(e.Order.Lines))}
		for i, l := range e.Order.Lines {
			d.Items[i] = ItemData{SKU: l.SKU, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
		}
		data = d
	case order.CancelledEvent:
		data = OrderCancelledData{OrderID: e.Order.ID, UserID: e.Order.UserID, TotalCents: e.Order.TotalCents, Currency: e.Order.Currency,
			Reason: string(e.Order.CancelReason)}
	default:
		return event.Envelope{}, fmt.Errorf("no CloudEvent mapping for %T", e)
	}
	env, err := event.New(e.EventType(), Source, e.OrderID(), data)
	if err != nil {
		return event.Envelope{}, fmt.Errorf("envelope %s: %w", e.EventType(), err)
	}
	return env, nil
}
