package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// TestRelayPublishesToATopicNotYetCreated: scripts/deps.sh, compose and kind create none of the services' topics, and
// Kafka (3.9) answers the writer's first look-up of a missing topic with UNKNOWN_TOPIC_OR_PARTITION even where it
// auto-creates topics, which kafka-go does not retry. A service's first rows for a topic nothing had created yet
// (the bridge's consumer group creates only the topics it carries, and only once it joins) failed, round after round.
// The relay now creates a topic it has not written to yet, with the broker's defaults, and the row goes out in the
// first round without a failed attempt.
func TestRelayPublishesToATopicNotYetCreated(t *testing.T) {
	bs := brokers(t)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		b := make([]byte, 5)
		_, _ = rand.Read(b)
		topic := "outbox-test-new-" + hex.EncodeToString(b) // never created: the row is its first write
		migrated(t, db)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e := add(t, ctx, db, topic, "order-1", 1)

		if _, err := outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{}).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if ms := rows(t, db); ms[0].SentAt == nil || ms[0].Attempts != 1 || ms[0].LastError != "" {
			t.Fatalf("row for a topic not yet created after the first round: sent_at %v, attempts %d, last_error %q",
				ms[0].SentAt, ms[0].Attempts, ms[0].LastError)
		}
		if got := counts(t, topic)["outbox.messages.failed"]; got != 0 {
			t.Errorf("outbox.messages.failed %d for a topic not yet created, want 0", got)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: bs, GroupID: topic, Topic: topic, StartOffset: kafka.FirstOffset,
			MaxWait: 100 * time.Millisecond})
		defer r.Close()
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("read %s: %v", topic, err)
		}
		if got := headerMap(m)["ce_id"]; got != e.ID {
			t.Fatalf("record on %s is event %s, want %s", topic, got, e.ID)
		}
	})
}
