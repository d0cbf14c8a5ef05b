package carrier

import (
	"context"
	"net/http"
	"os"
	"sort"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func TestMain(m *testing.M) {
	// What telemetry.Setup installs in a binary.
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	os.Exit(m.Run())
}

// sourceContext is a sampled remote span context with a trace state and
// one baggage member, i.e. everything the propagator writes.
func sourceContext(t *testing.T) context.Context {
	t.Helper()
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ts, err := trace.ParseTraceState("shanhai=1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts, Remote: true,
	}))
	m, _ := baggage.NewMember("tenant", "acme")
	b, _ := baggage.New(m)
	return baggage.ContextWithBaggage(ctx, b)
}

func checkRoundTrip(t *testing.T, c propagation.TextMapCarrier) {
	t.Helper()
	src := sourceContext(t)
	Inject(src, c)
	keys := c.Keys()
	sort.Strings(keys)
	got := Extract(context.Background(), c)
	want := trace.SpanContextFromContext(src)
	sc := trace.SpanContextFromContext(got)
	if sc.TraceID() != want.TraceID() || sc.SpanID() != want.SpanID() || !sc.IsSampled() || !sc.IsRemote() {
		t.Errorf("extracted %v, want trace %s span %s sampled remote", sc, want.TraceID(), want.SpanID())
	}
	if sc.TraceState().Get("shanhai") != "1" {
		t.Errorf("trace state %q lost", sc.TraceState().String())
	}
	if v := baggage.FromContext(got).Member("tenant").Value(); v != "acme" {
		t.Errorf("baggage tenant=%q, want acme", v)
	}
}

func TestHTTPRoundTrip(t *testing.T) {
	h := http.Header{}
	checkRoundTrip(t, HTTP(h))
	if h.Get("traceparent") == "" {
		t.Error("no traceparent header written")
	}
}

func TestKafkaRoundTrip(t *testing.T) {
	msg := kafka.Message{Headers: []kafka.Header{{Key: "ce_type", Value: []byte("order.created")}}}
	checkRoundTrip(t, Kafka(&msg.Headers))
	keys := map[string]int{}
	for _, h := range msg.Headers {
		keys[h.Key]++
	}
	for _, k := range []string{"traceparent", "tracestate", "baggage", "ce_type"} {
		if keys[k] != 1 {
			t.Errorf("header %q present %d times, want once (headers %v)", k, keys[k], keys)
		}
	}
	// A second injection (a retried publish) replaces, never duplicates.
	Inject(sourceContext(t), Kafka(&msg.Headers))
	if n := len(msg.Headers); n != 4 {
		t.Errorf("%d headers after re-inject, want 4", n)
	}
}

func TestNATSRoundTrip(t *testing.T) {
	msg := nats.NewMsg("shanhai.orders")
	checkRoundTrip(t, NATS(msg.Header))
	if msg.Header.Get("traceparent") == "" {
		t.Errorf("traceparent not stored under its lowercase key: %v", msg.Header)
	}
}

func TestPulsarRoundTrip(t *testing.T) {
	props := map[string]string{"__kafka_topic": "shanhai.orders"}
	checkRoundTrip(t, Pulsar(props))
	if props["traceparent"] == "" || props["__kafka_topic"] != "shanhai.orders" {
		t.Errorf("properties %v", props)
	}
}

// Another hop may have changed the header case; lookups still find it, and
// Set leaves a single lowercase key behind.
func TestCaseInsensitiveLookup(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	kh := []kafka.Header{{Key: "Traceparent", Value: []byte(tp)}}
	nh := nats.Header{"TraceParent": {tp}}
	ph := map[string]string{"TRACEPARENT": tp}
	for name, c := range map[string]propagation.TextMapCarrier{"kafka": Kafka(&kh), "nats": NATS(nh), "pulsar": Pulsar(ph)} {
		if got := c.Get("traceparent"); got != tp {
			t.Errorf("%s: Get(traceparent) = %q", name, got)
		}
		if sc := trace.SpanContextFromContext(Extract(context.Background(), c)); sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
			t.Errorf("%s: extracted %v", name, sc)
		}
		c.Set("traceparent", "x")
		if keys := c.Keys(); len(keys) != 1 || keys[0] != "traceparent" || c.Get("traceparent") != "x" {
			t.Errorf("%s: after Set keys %v value %q, want one lowercase key", name, keys, c.Get("traceparent"))
		}
	}
}

func TestMissingContextExtractsNothing(t *testing.T) {
	var hs []kafka.Header
	if sc := trace.SpanContextFromContext(Extract(context.Background(), Kafka(&hs))); sc.IsValid() {
		t.Errorf("extracted %v from empty headers", sc)
	}
}

// W3C baggage allows several baggage headers, to be read as one list. The
// HTTP carrier (OpenTelemetry's HeaderCarrier) reads them all; a message
// carrying two lost every member of the second after a broker hop.
func TestBaggageFromSeveralHeaders(t *testing.T) {
	kh := []kafka.Header{
		{Key: "baggage", Value: []byte("tenant=acme")},
		{Key: "ce_type", Value: []byte("order.created")},
		{Key: "Baggage", Value: []byte("region=eu,tier=gold")},
	}
	nh := nats.Header{}
	nh.Add("baggage", "tenant=acme")
	nh.Add("baggage", "region=eu,tier=gold")
	nhCase := nats.Header{"baggage": {"tenant=acme"}, "BAGGAGE": {"region=eu,tier=gold"}}
	ph := map[string]string{"baggage": "tenant=acme", "Baggage": "region=eu,tier=gold"}
	hh := http.Header{}
	hh.Add("baggage", "tenant=acme")
	hh.Add("baggage", "region=eu,tier=gold")
	for name, c := range map[string]propagation.TextMapCarrier{
		"http": HTTP(hh), "kafka": Kafka(&kh), "nats": NATS(nh), "nats, two spellings": NATS(nhCase),
		"pulsar, two spellings": Pulsar(ph),
	} {
		b := baggage.FromContext(Extract(context.Background(), c))
		for k, v := range map[string]string{"tenant": "acme", "region": "eu", "tier": "gold"} {
			if got := b.Member(k).Value(); got != v {
				t.Errorf("%s: baggage %s=%q, want %q (extracted %q)", name, k, got, v, b.String())
			}
		}
	}
}

// A key present in two spellings other than the one asked for (two hops
// that each changed the case) gives the same value on every Get: map order
// chose one at random, so redeliveries of one message could join different
// traces.
func TestGetIsStableAcrossSpellings(t *testing.T) {
	const a = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const b = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for name, c := range map[string]propagation.TextMapCarrier{
		"nats":   NATS(nats.Header{"Traceparent": {a}, "TRACEPARENT": {b}}),
		"pulsar": Pulsar(map[string]string{"Traceparent": a, "TRACEPARENT": b}),
	} {
		first := c.Get("traceparent")
		for range 100 {
			if got := c.Get("traceparent"); got != first {
				t.Fatalf("%s: Get gave %q, then %q", name, first, got)
			}
		}
	}
}
