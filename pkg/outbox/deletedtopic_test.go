package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// TestRelayCreatesAgainATopicDeletedWhileItRuns: the relay creates a topic before its first publish to it, once. A
// topic deleted after that (by an operator, or a test) was never created again: the writer (no auto-creation of its
// own) got UNKNOWN_TOPIC_OR_PARTITION for every later row, retried for good, and on a broker that does not create
// topics on demand nothing else ever made it (the shared Kafka does, but only for a look-up that asks it to, which the
// relay's writer never sends: so the row stayed unsent here too). Now that answer makes the next round ask Kafka to
// create the topic again, and the row goes out.
func TestRelayCreatesAgainATopicDeletedWhileItRuns(t *testing.T) {
	bs := brokers(t)
	db := migrated(t, dbtest.SQLite(t))
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	topic := "outbox-test-deleted-" + hex.EncodeToString(b)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond, Retention: -1})
	add(t, ctx, db, topic, "order-1", 1)
	drain(t, r)
	if ms := rows(t, db); ms[0].SentAt == nil {
		t.Fatalf("first row not published: %+v", ms[0])
	}

	admin := &kafka.Client{Addr: kafka.TCP(bs...)}
	t.Cleanup(func() {
		_, _ = admin.DeleteTopics(context.Background(), &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	})
	res, err := admin.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil || res.Errors[topic] != nil {
		t.Fatalf("delete topic %s: %v %v", topic, err, res.Errors[topic])
	}

	e := add(t, ctx, db, topic, "order-2", 2)
	deadline := time.Now().Add(45 * time.Second)
	for {
		if _, err := r.RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		ms := rows(t, db)
		if ms[1].SentAt != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("row for the deleted topic still unsent after %d attempts: %q", ms[1].Attempts, ms[1].LastError)
		}
		time.Sleep(50 * time.Millisecond)
	}
	reader := kafka.NewReader(kafka.ReaderConfig{Brokers: bs, GroupID: topic, Topic: topic,
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	defer reader.Close()
	m, err := reader.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	if got := headerMap(m)["ce_id"]; got != e.ID {
		t.Fatalf("record on the topic created again is event %s, want %s", got, e.ID)
	}
}
