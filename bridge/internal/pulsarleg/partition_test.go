package pulsarleg

import (
	"slices"
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/shanhai-dev/shanhai/bridge/internal/commit"
	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// ackedMsg is a delivered message as ack reads it: its headers, and an Ack that succeeds.
type ackedMsg struct {
	jetstream.Msg
	h nats.Header
}

func (m ackedMsg) Headers() nats.Header { return m.h }
func (m ackedMsg) Ack() error           { return nil }
func (m ackedMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{}, nil
}

// Pulsar's verdicts on offsets at or below the last acked one are dropped once acked (they were kept for the whole
// generation, one for every message Pulsar refused); a later offset's stays, as a replay from the ack floor reads it.
func TestAckForgetsTheRejectionsOfAckedOffsets(t *testing.T) {
	m, err := metrics.New(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{leg: New(Options{Metrics: m}), route: mapping.Route{Topic: "t", Subject: "t"}, id: 1,
		rejects: map[int64]rejection{10: {n: 6}, 11: {n: 1}, 12: {n: 1}}}
	s := &bsession{p: p, tracker: commit.New(1)}
	for cseq, offset := range []int64{10, 11, 12} {
		h := nats.Header{kafkaleg.HeaderTopic: {"t"}, kafkaleg.HeaderPartition: {"1"},
			kafkaleg.HeaderOffset: {strconv.FormatInt(offset, 10)}}
		if err := s.tracker.Add(int64(cseq + 1)); err != nil {
			t.Fatal(err)
		}
		s.held = append(s.held, held{cseq: uint64(cseq + 1), msg: ackedMsg{h: h}})
	}
	s.tracker.Done(1) // 10 dead-lettered
	s.tracker.Done(2) // 11 archived
	s.ack()
	if _, kept := p.rejects[12]; len(p.rejects) != 1 || !kept {
		t.Fatalf("rejections after offsets 10 and 11 were acked: %v, want only 12's", p.rejects)
	}
	// Another partition's message acked last (the topic's old subject) says nothing about this one's offsets.
	s.held[0].msg = ackedMsg{h: nats.Header{kafkaleg.HeaderTopic: {"t"}, kafkaleg.HeaderPartition: {"0"}, kafkaleg.HeaderOffset: {"99"}}}
	s.tracker.Done(3)
	s.ack()
	if len(p.rejects) != 1 {
		t.Fatalf("another partition's ack dropped this one's rejections: %v", p.rejects)
	}
}

// TestLegBLetterKeepsTheRecordsDlqHeadersApart: a record header named dlq_* that leg A carried into JetStream came first
// in leg B's letter, ahead of the bridge's dlq_reason and dlq_bridge_kafka_offset of the same names. It is carried as
// dlq_record_<name> now, and the bridge's fields are the only dlq_* of their names.
func TestLegBLetterKeepsTheRecordsDlqHeadersApart(t *testing.T) {
	h := nats.Header{"ce_id": {"e1"}, "dlq_reason": {"forged"}, "dlq_bridge_kafka_offset": {"1"}, kafkaleg.HeaderOffset: {"5"}}
	own, bridge := letterHeaders(h)
	m := dlq.Message(dlq.Letter{Leg: "nats-pulsar", Reason: "rejected", Topic: "t", Offset: 5, Headers: own, Bridge: bridge})
	got := map[string][]string{}
	for _, kh := range m.Headers {
		got[kh.Key] = append(got[kh.Key], string(kh.Value))
	}
	if !slices.Equal(got[dlq.HeaderReason], []string{"rejected"}) || !slices.Equal(got[dlq.HeaderBridgePrefix+kafkaleg.HeaderOffset], []string{"5"}) ||
		!slices.Equal(got[dlq.HeaderRecordPrefix+"dlq_reason"], []string{"forged"}) ||
		!slices.Equal(got[dlq.HeaderRecordPrefix+"dlq_bridge_kafka_offset"], []string{"1"}) || !slices.Equal(got["ce_id"], []string{"e1"}) {
		t.Fatalf("letter headers %v: want the bridge's dlq_reason and dlq_bridge_kafka_offset alone, the record's under %s", got, dlq.HeaderRecordPrefix)
	}
}
