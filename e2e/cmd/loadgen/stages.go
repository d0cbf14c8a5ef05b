package main

import (
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// A saga's end-to-end figure says how long, not where. stages splits it at
// the timestamps every event already carries, so a slow run points at the
// hop to fix without a tracing backend:
//
//	ce_time               when the service built the event (inside its transaction)
//	kafka_timestamp_ms    when the outbox relay handed it to Kafka (the bridge copies the record time)
//	arrival               when this process saw it on the JetStream subject
//
// All three clocks are this host's, which is the setup the load run targets;
// across hosts the differences would include clock skew.
type stages struct {
	mu   sync.Mutex
	seen map[string]*hops // order id → what was seen of its saga
}

// hops holds the timestamps of one order's two events.
type hops struct {
	created, paid stamp
}

type stamp struct {
	event, kafka, arrival time.Time
}

func (s stamp) ok() bool { return !s.event.IsZero() && !s.kafka.IsZero() && !s.arrival.IsZero() }

// Stage names, in saga order.
const (
	stageOrderOutbox   = "1 order outbox -> kafka"
	stageOrderBridge   = "2 kafka -> jetstream (order.created)"
	stagePayment       = "3 payment consume + charge"
	stagePaymentOutbox = "4 payment outbox -> kafka"
	stagePaymentBridge = "5 kafka -> jetstream (payment.succeeded)"
)

func newStages() *stages { return &stages{seen: map[string]*hops{}} }

// observe records one message from the orders or payments subject. Only
// order.created and payment.succeeded count; anything unreadable is skipped
// (the figures are diagnostics, the saga latency is measured elsewhere).
func (s *stages) observe(h nats.Header, data []byte, arrival time.Time) {
	typ := h.Get("ce_type")
	if typ != "order.created" && typ != "payment.succeeded" {
		return
	}
	var d struct {
		OrderID string `json:"order_id"`
	}
	if json.Unmarshal(data, &d) != nil || d.OrderID == "" {
		return
	}
	ev, err := time.Parse(time.RFC3339Nano, h.Get("ce_time"))
	if err != nil {
		return
	}
	kms, err := strconv.ParseInt(h.Get("kafka_timestamp_ms"), 10, 64)
	if err != nil || kms <= 0 {
		return
	}
	st := stamp{event: ev, kafka: time.UnixMilli(kms), arrival: arrival}
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.seen[d.OrderID]
	if x == nil {
		x = &hops{}
		s.seen[d.OrderID] = x
	}
	// A redelivered event keeps its first sighting: that is the one the
	// next hop reacted to.
	if typ == "order.created" && x.created.arrival.IsZero() {
		x.created = st
	} else if typ == "payment.succeeded" && x.paid.arrival.IsZero() {
		x.paid = st
	}
}

// durations returns each stage's durations over the orders mine accepts
// (this run's orders: other platforms' events may share the subjects).
func (s *stages) durations(mine func(orderID string) bool) map[string][]time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]time.Duration{}
	add := func(k string, d time.Duration) { out[k] = append(out[k], max(0, d)) }
	for id, x := range s.seen {
		if !mine(id) {
			continue
		}
		if x.created.ok() {
			add(stageOrderOutbox, x.created.kafka.Sub(x.created.event))
			add(stageOrderBridge, x.created.arrival.Sub(x.created.kafka))
		}
		if x.created.ok() && x.paid.ok() {
			add(stagePayment, x.paid.event.Sub(x.created.arrival))
		}
		if x.paid.ok() {
			add(stagePaymentOutbox, x.paid.kafka.Sub(x.paid.event))
			add(stagePaymentBridge, x.paid.arrival.Sub(x.paid.kafka))
		}
	}
	return out
}
