package outbox_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// TestRelayPublishesRowsBesideOneForATopicKafkaRefuses: kafka-go's writer looks up each message's topic before it
// sends anything and fails the whole call when one topic is refused (one that does not exist; a name Kafka never
// takes, which Add now refuses, was answered the same). The relay recorded that error against every row of the call,
// so the rows of a healthy topic claimed in the same round were not published and went into backoff, round after
// round while the refused row was due with them. Now only the refused topic's rows fail; the others are published in
// the same round.
//
// The relay now creates a missing topic before its first publish to it, so the refused topic is one Kafka will not
// create either: a name that collides with an existing topic's once '.' and '_' are taken as one (Kafka refuses it
// with INVALID_TOPIC_EXCEPTION, as their metric names would clash).
func TestRelayPublishesRowsBesideOneForATopicKafkaRefuses(t *testing.T) {
	bs := brokers(t)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		topic := newTopic(t, bs)
		migrated(t, db)
		ctx := context.Background()
		var good []string
		for i := range 4 {
			good = append(good, add(t, ctx, db, topic, "order-"+strconv.Itoa(i), i).ID)
		}
		createTopic(t, bs, topic+"_refused")
		missing := add(t, ctx, db, topic+".refused", "order-missing", 0)

		if _, err := outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{}).RunOnce(ctx); err != nil {
			t.Fatal(err)
		}
		count := onKafka(t, bs, topic)
		for _, id := range good {
			if count[id] != 1 {
				t.Errorf("event %s %d times on Kafka after the round, want once", id, count[id])
			}
		}
		for _, m := range rows(t, db) {
			refused := m.EventID == missing.ID
			if (m.SentAt == nil) != refused || (m.LastError != "") != refused || m.Attempts != 1 {
				t.Errorf("row %d %s (refused topic %v): sent_at %v, attempts %d, last_error %q",
					m.ID, m.Topic, refused, m.SentAt, m.Attempts, m.LastError)
			}
		}
	})
}

// createTopic creates topic with one partition; Kafka has it when this returns.
func createTopic(t *testing.T, bs []string, topic string) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(bs...)}
	res, err := c.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if err := res.Errors[topic]; err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
}
