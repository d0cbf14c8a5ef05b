package kafkatopic_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/kafkatopic"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func name(prefix string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// newWriter returns a writer with a transport of its own, as the relay's is: the topics Ensure creates must show in
// its metadata cache, not only in kafka-go's process-wide default transport's.
func newWriter(t *testing.T, bs []string) *kafka.Writer {
	t.Helper()
	tr := &kafka.Transport{MetadataTTL: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	w := &kafka.Writer{Addr: kafka.TCP(bs...), Transport: tr, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	t.Cleanup(func() { _ = w.Close() })
	return w
}

// TestEnsureCreatesMissingTopicsOnceAndLeavesOthersAlone: callers writing at once to topics not created yet each
// write on their first try; the topic is created once (one "created" line however many callers raced), with the
// broker's default partitions, and a topic that exists keeps the partitions its owner gave it.
func TestEnsureCreatesMissingTopicsOnceAndLeavesOthersAlone(t *testing.T) {
	bs := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	existing, fresh := name("kafkatopic-test-old-"), name("kafkatopic-test-new-")
	admin := &kafka.Client{Addr: kafka.TCP(bs...)}
	res, err := admin.CreateTopics(ctx, &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: existing, NumPartitions: 1, ReplicationFactor: 1}},
	})
	if err != nil || res.Errors[existing] != nil {
		t.Fatalf("create %s: %v %v", existing, err, res.Errors)
	}

	var logs testenv.LogBuffer
	w := newWriter(t, bs)
	c := kafkatopic.New(w, slog.New(slog.NewTextHandler(&logs, nil)))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			topic := []string{existing, fresh}[i%2]
			c.Ensure(ctx, existing, fresh)
			errs <- w.WriteMessages(ctx, kafka.Message{Topic: topic, Value: []byte("v")})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("write after Ensure: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "topic="+fresh); n != 1 {
		t.Errorf("%d log lines for the created topic, want 1:\n%s", n, logs.String())
	}
	if strings.Contains(logs.String(), existing) {
		t.Errorf("the existing topic was reported created or refused:\n%s", logs.String())
	}
	// Asked through the writer's transport: the default one's metadata cache may not list the new topic yet.
	meta, err := (&kafka.Client{Addr: w.Addr, Transport: w.Transport}).Metadata(ctx, &kafka.MetadataRequest{Topics: []string{existing, fresh}})
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]int{}
	for _, tp := range meta.Topics {
		parts[tp.Name] = len(tp.Partitions)
	}
	if parts[existing] != 1 {
		t.Errorf("existing topic has %d partitions, want the 1 it was created with", parts[existing])
	}
	if parts[fresh] < 1 {
		t.Errorf("created topic has %d partitions", parts[fresh])
	}
}

// TestEnsureKnownAllocatesNothing: once its topics are known, Ensure is on every write's path (the outbox relay calls
// it before each batch, with a topic per message), and costs no allocation there: the map of topics to ask about
// stays on the stack and the request is built only when there is one to send.
func TestEnsureKnownAllocatesNothing(t *testing.T) {
	bs := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := newWriter(t, bs)
	requests := &countingTransport{RoundTripper: w.Transport}
	w.Transport = requests
	c := kafkatopic.New(w, slog.New(slog.DiscardHandler))
	topic := name("kafkatopic-test-known-")
	topics := make([]string, 100) // a batch of 100 rows to one topic
	for i := range topics {
		topics[i] = topic
	}
	c.Ensure(ctx, topics...)
	// Known means Ensure sends nothing more. A first Ensure that Kafka answered "try again" (slow to create the
	// topic), or did not answer, leaves the topic to ask about, and the count below would be a request's
	// allocations, read as a regression of the known path.
	sent := requests.n.Load()
	c.Ensure(ctx, topics...)
	if requests.n.Load() != sent {
		t.Fatalf("%s is not known after the first Ensure (Kafka did not answer it created the topic or has it): "+
			"a second Ensure asked Kafka again, so there is no known path to measure", topic)
	}
	if n := testing.AllocsPerRun(100, func() { c.Ensure(ctx, topics...) }); n != 0 {
		t.Errorf("Ensure of known topics made %v allocations, want 0", n)
	}
}

// countingTransport counts the requests sent through it.
type countingTransport struct {
	kafka.RoundTripper
	n atomic.Int64
}

func (c *countingTransport) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	c.n.Add(1)
	return c.RoundTripper.RoundTrip(ctx, addr, req)
}

// BenchmarkEnsureKnown is Ensure's cost on the path every write takes once its topics exist: the outbox relay calls
// it before each batch, with the batch's topics, which are known after the first.
func BenchmarkEnsureKnown(b *testing.B) {
	bs := testenv.Kafka(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr := &kafka.Transport{MetadataTTL: time.Minute}
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(bs...), Transport: tr}
	defer w.Close()
	c := kafkatopic.New(w, slog.New(slog.DiscardHandler))
	topics := []string{name("kafkatopic-bench-a-"), name("kafkatopic-bench-b-"), name("kafkatopic-bench-c-")}
	c.Ensure(ctx, topics...)
	b.ReportAllocs()
	for b.Loop() {
		c.Ensure(ctx, topics...)
	}
}
