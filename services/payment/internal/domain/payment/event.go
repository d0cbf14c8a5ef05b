package payment

// Event is recorded by the aggregate and written to the outbox in the same
// transaction as the payment's final state.
type Event interface {
	EventType() string
	PaymentSnapshot() Snapshot
}

type SucceededEvent struct{ Payment Snapshot }
type FailedEvent struct{ Payment Snapshot }

// RefundedEvent follows a SucceededEvent for an order cancelled after (or
// while) it was charged.
type RefundedEvent struct{ Payment Snapshot }

func (SucceededEvent) EventType() string           { return "payment.succeeded" }
func (e SucceededEvent) PaymentSnapshot() Snapshot { return e.Payment }
func (FailedEvent) EventType() string              { return "payment.failed" }
func (e FailedEvent) PaymentSnapshot() Snapshot    { return e.Payment }
func (RefundedEvent) EventType() string            { return "payment.refunded" }
func (e RefundedEvent) PaymentSnapshot() Snapshot  { return e.Payment }

func (p *Payment) record(e Event) { p.events = append(p.events, e) }

// Events returns what changed since the payment was built or loaded.
func (p *Payment) Events() []Event { return append([]Event(nil), p.events...) }
