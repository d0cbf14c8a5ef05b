package kafkaleg

import (
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
	"github.com/shanhai-dev/shanhai/bridge/internal/metrics"
)

// A record's baggage reaches JetStream as produced. build used to parse it with the propagator and write it again:
// otel keeps members in a map (every message got another member order), resolves a repeated key to its last value,
// skips a member it cannot parse, and re-escapes values (%FF came out as %EF%BF%BD), so members were lost, changed and
// reordered on the way, although every other header is carried verbatim. The bridge adds nothing to baggage; only the
// trace context is this hop's.
func TestBuildCarriesBaggageVerbatim(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(telemetry.Propagator())
	defer otel.SetTextMapPropagator(prev)
	m, err := metrics.New(noop.NewMeterProvider().Meter("test"))
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{leg: New(Options{MaxBytes: 1 << 20, Metrics: m}), route: mapping.Route{Topic: "shanhai.orders", Subject: "shanhai.orders"}, subject: "shanhai.orders.p2"}
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	bags := []string{"zone=b;p=1,tenant=acme,zone=c,not a member,k=%FF", "region=eu"}
	msg := kafka.Message{Topic: "shanhai.orders", Partition: 2, Offset: 7, Key: []byte("order-42"), Time: time.Now(), Value: []byte("{}"),
		Headers: []kafka.Header{{Key: "traceparent", Value: []byte(parent)}, {Key: "baggage", Value: []byte(bags[0])},
			{Key: "ce_id", Value: []byte("e1")}, {Key: "baggage", Value: []byte(bags[1])}}}
	if letter, bad := p.poison(msg); bad {
		t.Fatalf("dead-lettered: %s %s", letter.Reason, letter.Detail)
	}
	built, span, _ := p.build(msg)
	span.End()
	if got := built.Header.Values("baggage"); !slices.Equal(got, bags) {
		t.Fatalf("baggage published as %q, want the record's %q", got, bags)
	}
	if tp := built.Header.Get("traceparent"); tp == "" || tp == parent || tp[3:35] != parent[3:35] {
		t.Fatalf("traceparent %q: want this hop's span in the record's trace", tp)
	}
}
