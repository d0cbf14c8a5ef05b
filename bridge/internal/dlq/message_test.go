package dlq

import (
	"slices"
	"strings"
	"testing"

	"github.com/segmentio/kafka-go"
)

// TestRecordsDlqHeadersCannotPassForTheBridges: a record's own header named dlq_* (any case) came first in its letter,
// so a reader of the first dlq_reason saw the producer's, and a replay dropping dlq_* dropped the record's header too.
// dlq_* is now the bridge's alone: a record's dlq_<x> is carried as dlq_record_dlq_<x>, and dropping the bridge's
// headers and restoring dlq_record_<name> gives the record's headers back, in order.
func TestRecordsDlqHeadersCannotPassForTheBridges(t *testing.T) {
	record := []kafka.Header{
		{Key: "ce_id", Value: []byte("e1")},
		{Key: "dlq_reason", Value: []byte("forged")},
		{Key: "DLQ_Source_Offset", Value: []byte("1")},
		{Key: "dlq_record_x", Value: []byte("x")},
		{Key: "ce_id", Value: []byte("e2")},
	}
	m := Message(Letter{Leg: "nats-pulsar", Reason: "rejected", Topic: "t", Offset: 5, Headers: record,
		Bridge: []kafka.Header{{Key: "kafka_offset", Value: []byte("5")}}})

	bridge := map[string][]string{}
	var replayed []kafka.Header
	for _, h := range m.Headers {
		switch {
		case strings.HasPrefix(h.Key, HeaderRecordPrefix):
			replayed = append(replayed, kafka.Header{Key: strings.TrimPrefix(h.Key, HeaderRecordPrefix), Value: h.Value})
		case strings.HasPrefix(strings.ToLower(h.Key), "dlq_"):
			bridge[strings.ToLower(h.Key)] = append(bridge[strings.ToLower(h.Key)], string(h.Value))
		default:
			replayed = append(replayed, h)
		}
	}
	if r, o, b := bridge[HeaderReason], bridge[HeaderOffset], bridge[HeaderBridgePrefix+"kafka_offset"]; !slices.Equal(r, []string{"rejected"}) ||
		!slices.Equal(o, []string{"5"}) || !slices.Equal(b, []string{"5"}) {
		t.Fatalf("the bridge's dlq_reason %q, dlq_source_offset %q, dlq_bridge_kafka_offset %q: want only its own (letter headers %v)", r, o, b, m.Headers)
	}
	if !slices.EqualFunc(replayed, record, func(a, b kafka.Header) bool { return a.Key == b.Key && string(a.Value) == string(b.Value) }) {
		t.Fatalf("a replay restores %v, want the record's %v", replayed, record)
	}
}
