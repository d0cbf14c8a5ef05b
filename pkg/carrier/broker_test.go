package carrier_test

// Integration tests: a traceparent injected on the producer side crosses the
// real broker (scripts/deps.sh servers, found through pkg/testenv) and the
// consumer extracts the same trace. They fail, never skip, when a server is
// missing.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/apache/pulsar-client-go/pulsar"
	pulsarlog "github.com/apache/pulsar-client-go/pulsar/log"
	"github.com/nats-io/nats.go"
	"github.com/segmentio/kafka-go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/carrier"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// producerSpan starts a real SDK span, as a service publishing an event has.
func producerSpan(t *testing.T) (context.Context, trace.SpanContext) {
	t.Helper()
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("carrier-test").Start(context.Background(), "publish", trace.WithSpanKind(trace.SpanKindProducer))
	t.Cleanup(func() { span.End() })
	return ctx, span.SpanContext()
}

func checkSameTrace(t *testing.T, got context.Context, want trace.SpanContext) {
	t.Helper()
	sc := trace.SpanContextFromContext(got)
	if sc.TraceID() != want.TraceID() || sc.SpanID() != want.SpanID() || !sc.IsSampled() {
		t.Fatalf("consumer extracted trace %s span %s sampled=%v; producer sent trace %s span %s",
			sc.TraceID(), sc.SpanID(), sc.IsSampled(), want.TraceID(), want.SpanID())
	}
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestTraceCrossesKafka(t *testing.T) {
	c := timeout(t, 60*time.Second)
	brokers := testenv.Kafka(t)
	topic := "carrier." + suffix()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	res, err := client.CreateTopics(c, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatalf("create topic: %v", err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("create topic: %v", err)
	}
	defer client.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})

	ctx, sent := producerSpan(t)
	msg := kafka.Message{Key: []byte("order-1"), Value: []byte(`{}`)}
	carrier.Inject(ctx, carrier.Kafka(&msg.Headers))
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, RequiredAcks: kafka.RequireAll}
	defer w.Close()
	if err := w.WriteMessages(c, msg); err != nil {
		t.Fatalf("produce: %v", err)
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: 0, MaxWait: 250 * time.Millisecond})
	defer r.Close()
	got, err := r.ReadMessage(c)
	if err != nil {
		t.Fatalf("consume: %v", err)
	}
	checkSameTrace(t, carrier.Extract(context.Background(), carrier.Kafka(&got.Headers)), sent)
}

func TestTraceCrossesNATS(t *testing.T) {
	nc, err := nats.Connect(testenv.NATS(t), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	subject := "carrier.test." + suffix()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	ctx, sent := producerSpan(t)
	msg := nats.NewMsg(subject)
	msg.Data = []byte(`{}`)
	carrier.Inject(ctx, carrier.NATS(msg.Header))
	if err := nc.PublishMsg(msg); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	checkSameTrace(t, carrier.Extract(context.Background(), carrier.NATS(got.Header)), sent)
}

func TestTraceCrossesPulsar(t *testing.T) {
	c := timeout(t, 60*time.Second)
	serviceURL, _ := testenv.Pulsar(t)
	client, err := pulsar.NewClient(pulsar.ClientOptions{
		URL: serviceURL, ConnectionTimeout: 5 * time.Second, OperationTimeout: 30 * time.Second,
		Logger: pulsarlog.NewLoggerWithSlog(slog.New(slog.NewTextHandler(io.Discard, nil))),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	topic := "persistent://shanhai/events/carrier-" + suffix()
	consumer, err := client.Subscribe(pulsar.ConsumerOptions{Topic: topic, SubscriptionName: "carrier-test", SubscriptionInitialPosition: pulsar.SubscriptionPositionEarliest})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer consumer.Close()
	producer, err := client.CreateProducer(pulsar.ProducerOptions{Topic: topic})
	if err != nil {
		t.Fatalf("create producer: %v", err)
	}
	defer producer.Close()

	ctx, sent := producerSpan(t)
	props := map[string]string{"__kafka_topic": "shanhai.orders"}
	carrier.Inject(ctx, carrier.Pulsar(props))
	if _, err := producer.Send(c, &pulsar.ProducerMessage{Payload: []byte(`{}`), Properties: props}); err != nil {
		t.Fatalf("send: %v", err)
	}
	got, err := consumer.Receive(c)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	_ = consumer.Ack(got)
	checkSameTrace(t, carrier.Extract(context.Background(), carrier.Pulsar(got.Properties())), sent)
}

func TestTraceCrossesHTTP(t *testing.T) {
	received := make(chan context.Context, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		received <- carrier.Extract(r.Context(), carrier.HTTP(r.Header))
	}))
	defer srv.Close()
	ctx, sent := producerSpan(t)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	carrier.Inject(ctx, carrier.HTTP(req.Header))
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	checkSameTrace(t, <-received, sent)
}
