package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

func msg(typ string, event time.Time, kafkaMs int64) nats.Header {
	h := nats.Header{}
	h.Set("ce_type", typ)
	h.Set("ce_time", event.Format(time.RFC3339Nano))
	h.Set("kafka_timestamp_ms", strconv.FormatInt(kafkaMs, 10))
	return h
}

// One saga whose five hops took 3, 7, 40, 5 and 11 ms splits into exactly those stages; a redelivery, another run's
// order and an event without a Kafka time are left out.
func TestStagesSplitTheSagaAtEachEventsTimestamps(t *testing.T) {
	t0 := time.UnixMilli(1_800_000_000_000)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s := newStages()
	s.observe(msg("order.created", at(0), at(3).UnixMilli()), []byte(`{"order_id":"o1"}`), at(10))
	s.observe(msg("order.created", at(0), at(3).UnixMilli()), []byte(`{"order_id":"o1"}`), at(500)) // redelivered
	s.observe(msg("payment.succeeded", at(50), at(55).UnixMilli()), []byte(`{"order_id":"o1"}`), at(66))
	s.observe(msg("order.created", at(0), at(1).UnixMilli()), []byte(`{"order_id":"other-run"}`), at(2))
	s.observe(msg("order.created", at(0), 0), []byte(`{"order_id":"o2"}`), at(2))
	s.observe(msg("payment.failed", at(0), at(1).UnixMilli()), []byte(`{"order_id":"o2"}`), at(2))

	got := s.durations(func(id string) bool { return id != "other-run" })
	want := map[string]time.Duration{
		stageOrderOutbox: 3 * time.Millisecond, stageOrderBridge: 7 * time.Millisecond, stagePayment: 40 * time.Millisecond,
		stagePaymentOutbox: 5 * time.Millisecond, stagePaymentBridge: 11 * time.Millisecond,
	}
	if len(got) != len(want) {
		t.Fatalf("stages = %v, want %v", got, want)
	}
	for name, d := range want {
		if len(got[name]) != 1 || got[name][0] != d {
			t.Errorf("%s = %v, want [%v]", name, got[name], d)
		}
	}
}
