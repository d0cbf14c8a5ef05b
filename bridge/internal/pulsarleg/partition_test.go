package pulsarleg

import (
	"strconv"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/shanhai-dev/shanhai/bridge/internal/commit"
	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
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
	p := &partition{leg: New(Options{}), route: mapping.Route{Topic: "t", Subject: "t"}, id: 1,
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
