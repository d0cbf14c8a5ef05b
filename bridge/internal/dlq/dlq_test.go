package dlq_test

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/testenv"

	"github.com/shanhai-dev/shanhai/bridge/internal/dlq"
	"github.com/shanhai-dev/shanhai/bridge/internal/harness"
)

// TestSendLetterOfARecordAtTheSizeLimit: Kafka took the source record, but
// its letter, with the dlq_* headers added, is over the broker's limit. Send
// retried that forever, which stopped the record's partition for good; now
// the letter goes without key, value and carried headers, naming the record.
func TestSendLetterOfARecordAtTheSizeLimit(t *testing.T) {
	t.Parallel() // topics of its own; it waits on Kafka
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := harness.ID()
	source, dead := "bridgetest."+id+".orders", "bridgetest."+id+".dlq"
	for _, topic := range []string{source, dead} {
		if err := harness.CreateTopic(ctx, brokers, topic, 1); err != nil {
			t.Fatal(err)
		}
	}
	rec := kafka.Message{Key: []byte("k1"), Value: bytes.Repeat([]byte("a"), 1048420), Headers: []kafka.Header{{Key: "ce_id", Value: []byte("e1")}}}
	w := harness.Writer(brokers, source)
	w.BatchBytes = 2 << 20
	defer w.Close()
	if err := w.WriteMessages(ctx, rec); err != nil {
		t.Fatalf("the source topic must take the record: %v", err)
	}

	sink := dlq.NewKafka(brokers, dead, time.Second, slog.Default())
	defer sink.Close()
	letter := dlq.Letter{Leg: "kafka-nats", Reason: "too_large", Detail: "1048300 bytes with headers, limit 900000",
		Topic: source, Offset: 0, Key: rec.Key, Value: rec.Value, Headers: rec.Headers}
	if err := sink.Send(ctx, letter); err != nil {
		t.Fatal(err)
	}
	got, err := harness.ReadDeadLetters(ctx, brokers, dead, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := harness.Headers(got[0])
	if h[dlq.HeaderOmitted] == "" || h[dlq.HeaderReason] != "too_large" || h[dlq.HeaderTopic] != source || h[dlq.HeaderOffset] != "0" || len(got[0].Value) != 0 {
		t.Fatalf("letter: headers %v, %d value bytes", h, len(got[0].Value))
	}
}

// TestSendLetterTheDLQTopicTakesKeepsItsValue: a DLQ topic configured for 5 MB records must get a 1.5 MB letter whole.
// The writer's own batch limit (kafka-go's default 1 MiB) refused it before the broker saw it, and Send took that for
// the topic's limit and wrote the letter without key, value and headers.
func TestSendLetterTheDLQTopicTakesKeepsItsValue(t *testing.T) {
	t.Parallel() // topics of its own; it waits on Kafka
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dead := "bridgetest." + harness.ID() + ".dlq"
	if err := harness.CreateTopic(ctx, brokers, dead, 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(5 << 20)}); err != nil {
		t.Fatal(err)
	}
	sink := dlq.NewKafka(brokers, dead, time.Second, slog.Default())
	defer sink.Close()
	value := bytes.Repeat([]byte("a"), 1_500_000)
	if err := sink.Send(ctx, dlq.Letter{Leg: "kafka-nats", Reason: "too_large", Topic: "src", Key: []byte("k1"), Value: value,
		Headers: []kafka.Header{{Key: "ce_id", Value: []byte("e1")}}}); err != nil {
		t.Fatal(err)
	}
	got, err := harness.ReadDeadLetters(ctx, brokers, dead, 1)
	if err != nil {
		t.Fatal(err)
	}
	if h := harness.Headers(got[0]); !bytes.Equal(got[0].Value, value) || string(got[0].Key) != "k1" || h["ce_id"] != "e1" {
		t.Fatalf("letter has %d of %d value bytes, key %q, headers %v", len(got[0].Value), len(value), got[0].Key, h)
	}
}
