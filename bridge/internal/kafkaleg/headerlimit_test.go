package kafkaleg

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// TestAHeaderSectionAtJetStreamsLimitIsPublished: the header section is measured as nats.go writes it, leg A's own
// headers with their real values and the trace context included. A record whose section comes to 65,535 bytes as
// built is no poison and JetStream stores it; one byte more and JetStream refuses it (error 10097), as headerBytes
// says beforehand. poison bounded the section from the record with leg A's headers at their longest, and
// dead-lettered such a record tens of bytes under the limit.
func TestAHeaderSectionAtJetStreamsLimitIsPublished(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(telemetry.Propagator())
	defer otel.SetTextMapPropagator(prev)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, js, topic := memoryStream(ctx, t)
	m, err := metrics.New(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{leg: New(Options{MaxBytes: 1 << 20, Metrics: m}), route: mapping.Route{Topic: topic, Subject: topic},
		subject: topic + ".p1", id: 1, cluster: "c1", topicID: "AAAAAAAAAAAAAAAAAAAAAA"}
	record := func(offset int64, big int) kafka.Message {
		return kafka.Message{Topic: topic, Partition: 1, Offset: offset, Key: []byte("order-42"), Time: time.Now(), Value: []byte("{}"),
			Headers: []kafka.Header{{Key: "traceparent", Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")},
				{Key: "ce_id", Value: []byte("e1")}, {Key: "x-big", Value: []byte(strings.Repeat("b", big))}}}
	}
	built := func(r kafka.Message) *nats.Msg {
		msg, span, _ := p.build(r)
		span.End()
		return msg
	}
	// The filler that takes the section to the limit exactly: the section grows with it byte for byte.
	big := maxHeaderBytes - headerBytes(built(record(12345, 0)).Header)
	at := record(12345, big)
	msg := built(at)
	if n := headerBytes(msg.Header); n != maxHeaderBytes {
		t.Fatalf("header section of %d bytes, want %d", n, maxHeaderBytes)
	}
	if letter, bad := p.poison(at); bad {
		t.Fatalf("a record whose header section is %d bytes as published dead-lettered: %s %s", maxHeaderBytes, letter.Reason, letter.Detail)
	}
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		t.Fatalf("JetStream refused a header section of %d bytes: %v", maxHeaderBytes, err)
	}
	over := built(record(12346, big+1)) // another offset of as many digits: another Nats-Msg-Id
	if n := headerBytes(over.Header); n != maxHeaderBytes+1 {
		t.Fatalf("header section of %d bytes, want %d", n, maxHeaderBytes+1)
	}
	if _, err := js.PublishMsg(ctx, over); err == nil {
		t.Fatalf("JetStream stored a header section of %d bytes: the limit headerBytes checks is not the server's", maxHeaderBytes+1)
	}
}
