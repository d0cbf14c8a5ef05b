package dlq_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

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

// TestSendLetterWithALongDetailToASmallTopic: a letter too large for the DLQ topic was sent again without key, value
// and carried headers but with its whole detail, the error text, which may quote the input. When the detail alone
// kept it over the topic's limit, that letter was retried for ever and its partition bridged nothing more. Now the
// detail is clipped too, and any DLQ topic that takes 2 KiB takes the letter: here the longest source topic name Kafka
// allows, the widest partition and offset, and a detail of 64 KiB, to a topic at 2 KiB.
func TestSendLetterWithALongDetailToASmallTopic(t *testing.T) {
	t.Parallel() // a topic of its own; it waits on Kafka
	// 64 KiB of two-byte runes, as a quote of the input could be
	detail := "invalid envelope: " + strings.Repeat("é", 32<<10)
	letter := dlq.Letter{Leg: "nats-pulsar", Reason: "too_large", Detail: detail, Topic: strings.Repeat("t", 249),
		Partition: math.MaxInt32, Offset: math.MinInt64, Key: []byte("k1"), Value: bytes.Repeat([]byte("a"), 4096),
		Headers: []kafka.Header{{Key: "ce_id", Value: []byte("e1")}}}
	got, h := sendToATopicOf(t, 2048, letter)
	d := h[dlq.HeaderDetail]
	if h[dlq.HeaderOmitted] == "" || h[dlq.HeaderTopic] != letter.Topic || h[dlq.HeaderOffset] != strconv.FormatInt(math.MinInt64, 10) ||
		h[dlq.HeaderPartition] != strconv.Itoa(math.MaxInt32) || len(got.Value) != 0 {
		t.Fatalf("letter: headers %v, %d value bytes", h, len(got.Value))
	}
	if !clippedFrom(detail, d) {
		t.Fatalf("detail %q (%d bytes): want the detail's start and end, each cut between runes", d, len(d))
	}
}

// TestSendLetterWithALongDetailKeepsItsRecord: a detail too long for the DLQ topic beside a record it does take costs
// the letter its detail's tail, not the record an operator replays.
func TestSendLetterWithALongDetailKeepsItsRecord(t *testing.T) {
	t.Parallel() // a topic of its own; it waits on Kafka
	detail := "invalid envelope: " + strings.Repeat("x", 16<<10)
	letter := dlq.Letter{Leg: "kafka-nats", Reason: "envelope", Detail: detail, Topic: "src", Offset: 3, Key: []byte("k1"),
		Value: bytes.Repeat([]byte("a"), 2048), Headers: []kafka.Header{{Key: "ce_id", Value: []byte("e1")}}}
	got, h := sendToATopicOf(t, 8192, letter)
	if d := h[dlq.HeaderDetail]; !clippedFrom(detail, d) {
		t.Fatalf("detail of %d bytes: want the %d clipped to their start and end", len(d), len(detail))
	}
	if !bytes.Equal(got.Value, letter.Value) || string(got.Key) != "k1" || h["ce_id"] != "e1" || h[dlq.HeaderOmitted] == "" {
		t.Fatalf("letter has %d of %d value bytes, key %q, headers %v", len(got.Value), len(letter.Value), got.Key, h)
	}
}

// sinkWithoutRetries returns a sink writing to topic and the context to send with, which ends at the sink's first
// retry: Send holds a letter the topic refuses, retrying for ever, so a retry is the failure there is no deadline for.
// The warnings of the refusal go to the returned buffer.
func sinkWithoutRetries(ctx context.Context, brokers []string, topic string) (*dlq.Kafka, context.Context, *testenv.LogBuffer) {
	send, stop := context.WithCancelCause(ctx)
	logs := new(testenv.LogBuffer)
	sink := dlq.NewKafka(brokers, topic, time.Second, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})))
	sink.Waiting = func(_ string, d int64) {
		if d > 0 {
			stop(errors.New("the letter was refused and is being retried"))
		}
	}
	return sink, send, logs
}

// TestSendLetterWithALongDetailSaysWhy: a clipped detail still says why the record is dead. Error text puts what
// failed first and why last, with any quote of the input between (leg A's `header "<name>" cannot be carried as a
// NATS header verbatim (...)`, a wrapped error's cause): clipped to its first 512 bytes, a header name of a few
// hundred bytes left `header "xxx…` and no reason at all. The middle goes now, the start and the end stay.
func TestSendLetterWithALongDetailSaysWhy(t *testing.T) {
	t.Parallel() // a topic of its own; it waits on Kafka
	name := strings.Repeat("n", 4096) + "\n"
	const why = " cannot be carried as a NATS header verbatim"
	detail := "header " + strconv.Quote(name) + why
	letter := dlq.Letter{Leg: "kafka-nats", Reason: "header", Detail: detail, Topic: "src", Offset: 7, Key: []byte("k1"),
		Value: []byte("v"), Headers: []kafka.Header{{Key: name, Value: []byte("x")}}}
	got, h := sendToATopicOf(t, 8192, letter)
	d := h[dlq.HeaderDetail]
	if len(d) >= len(detail) || !strings.HasPrefix(d, `header "nnn`) || !strings.HasSuffix(d, `\n"`+why) || !utf8.ValidString(d) {
		t.Fatalf("detail %q (%d of %d bytes): want its start and its end, the reason, kept", d, len(d), len(detail))
	}
	if string(got.Value) != "v" || h[dlq.HeaderOffset] != "7" || !strings.Contains(h[dlq.HeaderOmitted], "detail") {
		t.Fatalf("letter: value %q, headers %v", got.Value, h)
	}
}

// clippedFrom reports whether d is detail clipped by Send: shorter, valid UTF-8, a start and an end of detail, each
// cut between runes, around the " … " that stands for the middle.
func clippedFrom(detail, d string) bool {
	head, tail, ok := strings.Cut(d, " … ")
	return ok && head != "" && tail != "" && len(d) < len(detail) && utf8.ValidString(d) &&
		strings.HasPrefix(detail, head) && strings.HasSuffix(detail, tail)
}

// sendToATopicOf sends letter to a DLQ topic of its own taking at most maxBytes a message, and returns the letter as
// written and its headers; it fails the test when Send holds the letter for a retry (the topic refused it).
func sendToATopicOf(t *testing.T, maxBytes int, letter dlq.Letter) (kafka.Message, map[string]string) {
	t.Helper()
	brokers := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dead := "bridgetest." + harness.ID() + ".dlq"
	if err := harness.CreateTopic(ctx, brokers, dead, 1, kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(maxBytes)}); err != nil {
		t.Fatal(err)
	}
	sink, send, logs := sinkWithoutRetries(ctx, brokers, dead)
	defer sink.Close()
	if err := sink.Send(send, letter); err != nil {
		t.Fatalf("send: %v (%v); log: %s", err, context.Cause(send), logs)
	}
	got, err := harness.ReadDeadLetters(ctx, brokers, dead, 1)
	if err != nil {
		t.Fatal(err)
	}
	return got[0], harness.Headers(got[0])
}
