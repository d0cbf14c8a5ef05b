package order

// Event is a domain event the aggregate records when it changes. A
// repository persists pending events in the same transaction as the order
// (the outbox), so an event exists exactly when its change was committed.
type Event interface {
	EventType() string
	OrderID() string
}

// Created is recorded when an order is placed.
type Created struct{ Order Snapshot }

// CancelledEvent is recorded when a pending order is cancelled.
type CancelledEvent struct{ Order Snapshot }

func (Created) EventType() string        { return "order.created" }
func (e Created) OrderID() string        { return e.Order.ID }
func (CancelledEvent) EventType() string { return "order.cancelled" }
func (e CancelledEvent) OrderID() string { return e.Order.ID }

func (o *Order) record(e Event) { o.events = append(o.events, e) }

// Events returns the events recorded since the order was built or loaded.
func (o *Order) Events() []Event { return append([]Event(nil), o.events...) }
