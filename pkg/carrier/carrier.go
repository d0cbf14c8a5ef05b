// Package carrier adapts the header shapes of each transport Shanhai uses to
// OpenTelemetry's propagation.TextMapCarrier, so a trace continues across
// HTTP, Kafka, NATS and Pulsar hops with one Inject and one Extract call:
//
//	carrier.Inject(ctx, carrier.Kafka(&msg.Headers))          // producer
//	ctx = carrier.Extract(ctx, carrier.Kafka(&msg.Headers))   // consumer
//
// Keys are written lowercase (traceparent, tracestate, baggage), the form
// the W3C specs use and the form every broker client in other languages
// looks for; lookups also accept other spellings, because a hop we do not
// control may have changed the case.
package carrier

import (
	"context"
	"iter"
	"slices"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// Inject writes ctx's trace context and baggage into c with the global
// propagator (installed by telemetry.Setup).
func Inject(ctx context.Context, c propagation.TextMapCarrier) {
	otel.GetTextMapPropagator().Inject(ctx, c)
}

// Extract returns ctx extended with the trace context and baggage found in c.
func Extract(ctx context.Context, c propagation.TextMapCarrier) context.Context {
	return otel.GetTextMapPropagator().Extract(ctx, c)
}

// Each broker carrier also hands propagation.Baggage every baggage header,
// as HTTP's does.
var _ = []propagation.ValuesGetter{KafkaHeaders{}, NATSHeaders{}, PulsarProperties{}}

// otherSpellings returns the keys that match key only when case is ignored,
// sorted: map order would make the choice between two of them random.
func otherSpellings(keys iter.Seq[string], key string) []string {
	var out []string
	for k := range keys {
		if k != key && strings.EqualFold(k, key) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}
