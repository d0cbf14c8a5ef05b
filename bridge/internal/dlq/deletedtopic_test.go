package dlq

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestLetterAfterItsTopicWasDeleted: the sink creates the DLQ topic before its first letter, once. A topic deleted
// after that (by an operator, or a test) was not created again by the sink: a letter's write found it missing and was
// retried, its partition held, for as long as nothing else made the topic. Only the writer's AllowAutoTopicCreation
// made it, on a broker that creates topics on demand (the shared Kafka does: there the letter went out after about
// six failed writes and warnings); the writer here asks for no auto-creation, as a broker with
// auto.create.topics.enable=false would refuse it. Now a write that finds the topic missing has the next attempt ask
// Kafka to create it again, and the letter is written.
func TestLetterAfterItsTopicWasDeleted(t *testing.T) {
	t.Parallel() // a topic of its own; it waits on Kafka
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dead := "bridgetest." + harness.ID() + ".dlq-deleted"
	var logs testenv.LogBuffer
	sink := NewKafka(brokers, dead, 200*time.Millisecond, slog.New(slog.NewTextHandler(&logs, nil)))
	defer sink.Close()
	sink.w.AllowAutoTopicCreation = false
	if err := sink.Send(ctx, Letter{Leg: "kafka-nats", Reason: "envelope", Topic: "src", Offset: 1}); err != nil {
		t.Fatal(err)
	}

	admin := &kafka.Client{Addr: kafka.TCP(brokers...)}
	t.Cleanup(func() {
		_, _ = admin.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{dead}})
	})
	res, err := admin.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{dead}})
	if err != nil || res.Errors[dead] != nil {
		t.Fatalf("delete topic %s: %v %v", dead, err, res.Errors[dead])
	}

	sent := make(chan error, 1)
	go func() {
		sent <- sink.Send(ctx, Letter{Leg: "kafka-nats", Reason: "envelope", Topic: "src", Offset: 2, Value: []byte("v2")})
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(45 * time.Second):
		t.Fatalf("letter to the deleted DLQ topic still unwritten after 45 s:\n%s", logs.String())
	}
	t.Logf("written after:\n%s", logs.String())
	// Any partition: the writer's round robin has moved past the first letter's.
	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, GroupID: dead, Topic: dead,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer reader.Close()
	m, err := reader.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", dead, err)
	}
	if h := harness.Headers(m); string(m.Value) != "v2" || h[HeaderOffset] != "2" {
		t.Fatalf("first letter on the topic created again: %q headers %v, want the second letter", m.Value, h)
	}
}
