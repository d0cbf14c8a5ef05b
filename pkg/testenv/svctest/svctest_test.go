package svctest_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
)

func TestIssuerTokensVerifyAgainstItsJWKS(t *testing.T) {
	is := svctest.NewIssuer(t)
	v := auth.NewVerifier(is.URL, auth.VerifierOptions{})
	c, err := v.Verify(context.Background(), is.Token(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "alice" {
		t.Fatalf("subject = %q", c.Subject)
	}
	if _, err := v.Verify(context.Background(), svctest.NewIssuer(t).Token(t, "alice")); err == nil {
		t.Fatal("a token of another issuer verified")
	}
}

func TestStreamPublishesLikeTheBridgeAndIsDeletedAfterTheTest(t *testing.T) {
	// telemetry.Setup installs this in the services' tests; Headers uses the global propagator as the bridge does.
	otel.SetTextMapPropagator(propagation.TraceContext{})
	var name string
	var js jetstream.JetStream
	t.Run("publish", func(t *testing.T) {
		s := svctest.NewStream(t, "SVCTEST")
		name, js = s.Name, s.JS
		ctx := context.Background()
		if _, err := s.JS.CreateStream(ctx, jetstream.StreamConfig{Name: s.Name, Subjects: []string{s.Subjects()}}); err != nil {
			t.Fatal(err)
		}
		c, err := s.JS.CreateOrUpdateConsumer(ctx, s.Name, jetstream.ConsumerConfig{Durable: "svctest", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		env, err := event.New("order.created", "/shanhai/order", "o-1", map[string]string{"order_id": "o-1"})
		if err != nil {
			t.Fatal(err)
		}
		parent := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{1, 1, 1, 1, 1, 1, 1, 1},
			TraceFlags: trace.FlagsSampled, Remote: true,
		})
		// The same event twice is two messages, as a Kafka redelivery through the bridge would be.
		for range 2 {
			s.Publish(t, s.Prefix+"shanhai.orders", "shanhai.orders", "o-1", svctest.Headers(env, &parent), env.Data)
		}
		for i := range 2 {
			m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
			if err != nil {
				t.Fatalf("message %d: %v", i, err)
			}
			h := m.Headers()
			if h.Get("ce_type") != "order.created" || h.Get("ce_id") != env.ID || h.Get("kafka_topic") != "shanhai.orders" ||
				h.Get("kafka_key") != "o-1" || !strings.HasPrefix(h.Get("Nats-Msg-Id"), "shanhai.orders/0/") ||
				!strings.Contains(h.Get("traceparent"), parent.TraceID().String()) || string(m.Data()) != string(env.Data) {
				t.Fatalf("message %d: headers %v data %s", i, h, m.Data())
			}
			if i == 1 {
				// Drained must not hold while a message is unacknowledged.
				if testenv.Failure(t, func(tb testing.TB) { s.Drained(tb, "svctest", 300*time.Millisecond) }) == "" {
					t.Fatal("Drained held with a message not acknowledged")
				}
			}
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		s.Drained(t, "svctest", 5*time.Second)
	})
	if js == nil {
		t.FailNow()
	}
	if _, err := js.Stream(context.Background(), name); err == nil {
		t.Fatalf("stream %s still there after its test ended", name)
	}
}

func TestKafkaTailSeesOnlyWhatCameAfterIt(t *testing.T) {
	const topic = "shanhai.orders"
	key := "svctest-" + svctest.Random(4)
	w := &kafka.Writer{Addr: kafka.TCP(testenv.Kafka(t)...), Topic: topic, Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	write := func(v string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(key), Value: []byte(v), Headers: []kafka.Header{{Key: "n", Value: []byte(v)}}}); err != nil {
			t.Fatal(err)
		}
	}
	write("before")
	tail := svctest.TailKafka(t, topic)
	write("after")
	m := tail.Find(t, key, 20*time.Second)
	if string(m.Value) != "after" || svctest.HeaderMap(m.Headers)["n"] != "after" {
		t.Fatalf("found %s (headers %v), want the message written after the tail", m.Value, m.Headers)
	}
}

// stubService records what Serve did with it.
type stubService struct {
	startErr         error
	started, stopped bool
}

func (f *stubService) Start(context.Context) error { f.started = true; return f.startErr }
func (f *stubService) Stop() error                 { f.stopped = true; return nil }

func TestServeStartsServesAndStops(t *testing.T) {
	svc := &stubService{}
	t.Run("serve", func(t *testing.T) {
		srv := svctest.Serve(t, svc, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) }))
		if !svc.started || svc.stopped {
			t.Fatalf("started %v, stopped %v while the test runs", svc.started, svc.stopped)
		}
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot {
			t.Fatalf("status %d: not the given handler", resp.StatusCode)
		}
	})
	if !svc.stopped {
		t.Fatal("not stopped when the test ended")
	}

	failing := &stubService{startErr: errors.New("no broker")}
	var failed string
	t.Run("start fails", func(t *testing.T) {
		failed = testenv.Failure(t, func(tb testing.TB) { svctest.Serve(tb, failing, http.NotFoundHandler()) })
	})
	if !strings.Contains(failed, "no broker") || !failing.stopped {
		t.Fatalf("failure %q, stopped %v: a failed start must fail the test and still stop", failed, failing.stopped)
	}
}

func TestContinues(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{9, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, SpanID: trace.SpanID{2, 2, 2, 2, 2, 2, 2, 2},
		TraceFlags: trace.FlagsSampled, Remote: true,
	})
	_, s := tp.Tracer("t").Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "x process")
	s.End()
	_, other := tp.Tracer("t").Start(context.Background(), "y process")
	other.End()
	if !svctest.Continues(rec.Ended(), "x process", parent) {
		t.Error("the child span not found")
	}
	if svctest.Continues(rec.Ended(), "y process", parent) {
		t.Error("a span of another trace counted")
	}
	if svctest.Continues(rec.Ended(), "z process", parent) {
		t.Error("a span of another name counted")
	}
}
