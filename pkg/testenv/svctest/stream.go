package svctest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/carrier"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
)

// Stream is a JetStream stream of one test: its name and subject prefix are random, so a service started on it sees
// only what the test publishes. The service creates the stream; Stream deletes it when the test ends.
type Stream struct {
	JS     jetstream.JetStream
	Name   string // e.g. TEST_ORDER_1a2b3c4d
	Prefix string // put before every subject, e.g. "t1a2b3c4d."
}

// NewStream connects to the NATS test server and names a private stream after service. Its cleanup is registered
// before the caller starts anything, so a failed start still removes the stream.
func NewStream(t testing.TB, service string) *Stream {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatalf("svctest: connect to NATS: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		t.Fatalf("svctest: JetStream: %v", err)
	}
	suffix := Random(4)
	s := &Stream{JS: js, Name: "TEST_" + service + "_" + suffix, Prefix: "t" + suffix + "."}
	t.Cleanup(func() {
		_ = js.DeleteStream(context.Background(), s.Name)
		nc.Close()
	})
	return s
}

// Subjects is the stream's subject filter, the test's copy of shanhai.>.
func (s *Stream) Subjects() string { return s.Prefix + "shanhai.>" }

// Headers returns env's CloudEvents headers as the bridge copies them from Kafka to NATS, with parent's trace context
// when parent is not nil, written by the global propagator (telemetry.Setup installs W3C trace context and baggage).
func Headers(env event.Envelope, parent *trace.SpanContext) nats.Header {
	hdr := nats.Header{}
	for k, v := range env.Headers() {
		hdr.Set(k, v)
	}
	if parent != nil {
		carrier.Inject(trace.ContextWithSpanContext(context.Background(), *parent), carrier.NATS(hdr))
	}
	return hdr
}

// Publish publishes data to subject (one of the stream's, so with Prefix) the way the bridge does: with the kafka_topic and kafka_key
// (when key is not empty) headers and a fresh Nats-Msg-Id, so a republished event is a new message, as a Kafka
// redelivery would be.
func (s *Stream) Publish(t testing.TB, subject, topic, key string, hdr nats.Header, data []byte) {
	t.Helper()
	hdr.Set("kafka_topic", topic)
	if key != "" {
		hdr.Set("kafka_key", key)
	}
	hdr.Set("Nats-Msg-Id", topic+"/0/"+uuid.NewString())
	if _, err := s.JS.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: hdr, Data: data}); err != nil {
		t.Fatalf("svctest: publish to %s: %v", subject, err)
	}
}

// Drained waits until the durable consumer has settled (acknowledged or terminated) every message in the stream.
func (s *Stream) Drained(t testing.TB, durable string, within time.Duration) {
	t.Helper()
	ctx := context.Background()
	runtest.Eventually(t, within, "consumer "+durable+" to settle every message", func() bool {
		st, err := s.JS.Stream(ctx, s.Name)
		if err != nil {
			return false
		}
		si, err := st.Info(ctx)
		if err != nil {
			return false
		}
		c, err := s.JS.Consumer(ctx, s.Name, durable)
		if err != nil {
			return false
		}
		ci, err := c.Info(ctx)
		return err == nil && ci.NumAckPending == 0 && ci.NumPending == 0 && ci.AckFloor.Stream >= si.State.LastSeq
	})
}

// Delivered is how many deliveries cons has made, redeliveries included (its consumer sequence), as the server counts
// them: what a test of redelivery compares with the number of messages it published.
func Delivered(t testing.TB, cons jetstream.Consumer) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatalf("svctest: consumer info: %v", err)
	}
	return info.Delivered.Consumer
}
