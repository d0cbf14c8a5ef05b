package pulsarleg

import (
	"testing"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"

	"github.com/shanhai-dev/shanhai/bridge/internal/kafkaleg"
	"github.com/shanhai-dev/shanhai/bridge/internal/mapping"
)

// A message's baggage reaches Pulsar as leg A carried it. build used to parse it with the propagator and write it
// again (members reordered, a repeated key's earlier values and unparsable members dropped, values re-escaped), and
// kept only the first of several baggage headers' values (a Pulsar property holds one). Several are one list (W3C
// Baggage), so they are joined in order.
func TestBuildCarriesBaggageVerbatim(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(telemetry.Propagator())
	defer otel.SetTextMapPropagator(prev)
	p := &partition{leg: New(Options{}), route: mapping.Route{Topic: "shanhai.orders", Subject: "shanhai.orders", PulsarTopic: "persistent://shanhai/events/shanhai.orders"}, id: 2}
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	h := nats.Header{"traceparent": {parent}, "baggage": {"zone=b;p=1,tenant=acme,zone=c,not a member,k=%FF", "region=eu"},
		kafkaleg.HeaderTopic: {"shanhai.orders"}, kafkaleg.HeaderPartition: {"2"}, kafkaleg.HeaderOffset: {"7"}, kafkaleg.HeaderKey: {"order-42"}}
	pm, span, _ := p.build(dataMsg{ackedMsg{h: h}}, 7)
	span.End()
	if got, want := pm.Properties["baggage"], "zone=b;p=1,tenant=acme,zone=c,not a member,k=%FF,region=eu"; got != want {
		t.Fatalf("baggage archived as %q, want %q", got, want)
	}
	if tp := pm.Properties["traceparent"]; tp == "" || tp == parent || tp[3:35] != parent[3:35] {
		t.Fatalf("traceparent %q: want this hop's span in the message's trace", tp)
	}
}

// dataMsg is a delivered message as build reads it: headers and a payload.
type dataMsg struct{ ackedMsg }

func (dataMsg) Data() []byte { return []byte("{}") }
