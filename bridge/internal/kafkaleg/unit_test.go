package kafkaleg

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
)

func TestHeaderSafe(t *testing.T) {
	tests := []struct {
		k, v string
		want bool
	}{
		{"ce_id", "abc", true},
		{"traceparent", "00-aa-bb-01", true},
		{"Nats-Expected-Stream", "X", false},
		{"nats-msg-id", "x", false},
		{"bad key", "x", false},
		{"k", "line\r\nInjected: 1", false},
		{"k", string([]byte{0xff}), false},
		{"", "x", false},
		{"content/type", "x", false}, // nats.go refuses these names: the partition stopped on them
		{"(x)", "x", false},
		{"a\x00b", "x", false},
		{"é", "x", false},
		{"x-b3_sampled.v2", "1", true},
	}
	for _, tc := range tests {
		if got := headerSafe(tc.k, tc.v); got != tc.want {
			t.Errorf("headerSafe(%q, %q) = %v", tc.k, tc.v, got)
		}
	}
}

func TestIsRejection(t *testing.T) {
	if !isRejection(&jetstream.APIError{Code: 400, ErrorCode: 10054}) {
		t.Error("400 from JetStream is a verdict on the message")
	}
	if isRejection(&jetstream.APIError{Code: 503}) || isRejection(nats.ErrTimeout) || isRejection(errors.New("x")) {
		t.Error("transient errors must be retried, not dead-lettered")
	}
	if !isRejection(nats.ErrMaxPayload) || !isRejection(nats.ErrBadHeaderMsg) {
		t.Error("max payload and a header nats.go cannot write are verdicts")
	}
}

// A producer's headers named like leg A's own must not stand in for them.
func TestBuildSetsItsOwnMetadata(t *testing.T) {
	p := &partition{leg: New(Options{}), route: mapping.Route{Topic: "t", Subject: "t"}, subject: "t.p0"}
	msg, span, _ := p.build(kafka.Message{Topic: "t", Offset: 7, Key: []byte("k1"), Headers: []kafka.Header{
		{Key: HeaderKeyEncoding, Value: []byte("base64")}, {Key: HeaderOffset, Value: []byte("99")}, {Key: "ce_id", Value: []byte("e1")}}})
	span.End()
	h := msg.Header
	if h.Get(HeaderKeyEncoding) != "" || h.Get(HeaderKey) != "k1" || h.Get(HeaderOffset) != "7" || h.Get("ce_id") != "e1" {
		t.Fatalf("headers %v", h)
	}
}

// RecordKey gives back the key build carried, printable or not.
func TestRecordKeyRoundTrip(t *testing.T) {
	p := &partition{leg: New(Options{}), route: mapping.Route{Topic: "t", Subject: "t"}, subject: "t.p0"}
	for _, key := range [][]byte{[]byte("order-42"), {0, 0xff, 'k'}, nil} {
		msg, span, _ := p.build(kafka.Message{Topic: "t", Key: key})
		span.End()
		if got := RecordKey(msg.Header); string(got) != string(key) {
			t.Errorf("key %q came back as %q (headers %v)", key, got, msg.Header)
		}
	}
}

func TestPrintable(t *testing.T) {
	if !printable([]byte("order-42")) || printable([]byte{0, 1}) || printable([]byte{0xff}) {
		t.Fatal("printable wrong")
	}
}

func TestMsgID(t *testing.T) {
	if got := MsgID("shanhai.orders", 2, 17); got != "shanhai.orders/2/17" {
		t.Fatalf("MsgID = %q", got)
	}
}
