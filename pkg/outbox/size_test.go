package outbox_test

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/outbox/kafkasize"
)

// maxMessageBytes is a topic's configuration limiting its record batches to n bytes.
func maxMessageBytes(n int) kafka.ConfigEntry {
	return kafka.ConfigEntry{ConfigName: "max.message.bytes", ConfigValue: strconv.Itoa(n)}
}

// addSized commits one event for key whose payload is about size bytes and returns it.
func addSized(t *testing.T, db *gorm.DB, topic, key string, size int) event.Envelope {
	t.Helper()
	e, err := event.New("order.created", "/services/order", key, map[string]string{"note": strings.Repeat("x", size)})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Transaction(func(tx *gorm.DB) error { return outbox.Add(context.Background(), tx, topic, key, e) }); err != nil {
		t.Fatal(err)
	}
	return e
}

// onKafka counts the records of topic by event id.
func onKafka(t *testing.T, bs []string, topic string) map[string]int {
	t.Helper()
	count := map[string]int{}
	for _, m := range readAll(t, bs, topic) {
		count[headerMap(m)["ce_id"]]++
	}
	return count
}

// sizeRefusals wraps w and counts the writes refused (in part or whole) for a message's size.
type sizeRefusals struct {
	w outbox.Writer
	n atomic.Int32
}

func (s *sizeRefusals) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	err := s.w.WriteMessages(ctx, msgs...)
	if kafkasize.TooLarge(err) {
		s.n.Add(1)
	}
	return err
}

// TestRelayPublishesABatchOnceWhenOneRowIsTooLarge: the broker refuses only the partition batch holding a row over
// the topic's limit and takes the other partitions' batches. The relay then sent every row of the round again one at
// a time, so Kafka held the rows of the other partitions twice (21 records for 12 rows). Now the rows Kafka took are
// marked sent, only the refused ones are sent again, each alone, and only the oversized row is set aside.
func TestRelayPublishesABatchOnceWhenOneRowIsTooLarge(t *testing.T) {
	bs := brokers(t)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		topic := newTopic(t, bs, maxMessageBytes(100_000))
		migrated(t, db)
		var small []string
		for i := range 12 {
			small = append(small, add(t, context.Background(), db, topic, "order-"+strconv.Itoa(i), i).ID)
		}
		big := addSized(t, db, topic, "big", 200_000)

		drain(t, outbox.NewRelay(db, outbox.NewWriter(bs...), outbox.RelayOptions{}))
		count := onKafka(t, bs, topic)
		for _, id := range small {
			if count[id] != 1 {
				t.Errorf("event %s %d times on Kafka, want once", id, count[id])
			}
		}
		if count[big.ID] != 0 || len(count) != len(small) {
			t.Errorf("Kafka holds %d distinct events, want the %d small ones", len(count), len(small))
		}
		for _, m := range rows(t, db) {
			oversized := m.EventID == big.ID
			if m.SentAt == nil || (m.LastError != "") != oversized {
				t.Errorf("row %d (oversized %v): sent_at %v, last_error %q", m.ID, oversized, m.SentAt, m.LastError)
			}
		}
	})
}

// TestRelaySendsAloneTheRowsOfABatchTooLargeTogether: rows each under the topic's limit whose partition batch is over
// it are refused together with the broker's "too large". Each is sent again alone and published once; none is set
// aside as too large.
func TestRelaySendsAloneTheRowsOfABatchTooLargeTogether(t *testing.T) {
	bs := brokers(t)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		topic := newTopic(t, bs, maxMessageBytes(100_000))
		migrated(t, db)
		// 45 KB each: a partition batch of three or more is over the limit, one of two is not.
		var ids []string
		for i := range 12 {
			ids = append(ids, addSized(t, db, topic, "order-"+strconv.Itoa(i), 45_000).ID)
		}
		w := &sizeRefusals{w: outbox.NewWriter(bs...)}
		drain(t, outbox.NewRelay(db, w, outbox.RelayOptions{}))
		if w.n.Load() == 0 {
			t.Fatal("Kafka refused no partition batch: the test did not exercise a batch too large together")
		}
		count := onKafka(t, bs, topic)
		for _, id := range ids {
			if count[id] != 1 {
				t.Errorf("event %s %d times on Kafka, want once", id, count[id])
			}
		}
		for _, m := range rows(t, db) {
			if m.SentAt == nil || m.LastError != "" {
				t.Errorf("row %d: sent_at %v, last_error %q", m.ID, m.SentAt, m.LastError)
			}
		}
	})
}

// TestRelayPublishesARowOverOneMiBTheTopicTakes: kafka-go's writer refuses a message over its BatchBytes (1 MiB by
// default) with the error the broker gives for its own limit, so the relay set aside as too large for Kafka a row
// that the topic (max.message.bytes 5 MiB) takes, and never published it. NewWriter's BatchBytes now leaves the
// decision to the broker.
func TestRelayPublishesARowOverOneMiBTheTopicTakes(t *testing.T) {
	bs := brokers(t)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		topic := newTopic(t, bs, maxMessageBytes(5<<20))
		migrated(t, db)
		big := addSized(t, db, topic, "big", 2<<20)
		drain(t, outbox.NewRelay(db, outbox.NewWriter(bs...), outbox.RelayOptions{}))
		if ms := rows(t, db); ms[0].SentAt == nil || ms[0].LastError != "" {
			t.Fatalf("row the topic takes: sent_at %v, last_error %q", ms[0].SentAt, ms[0].LastError)
		}
		if count := onKafka(t, bs, topic); count[big.ID] != 1 || len(count) != 1 {
			t.Fatalf("Kafka holds %v, want the 2 MiB event %s once", count, big.ID)
		}
	})
}

// TestRelaySendsAloneTheRowsOfACallTheWriterRefuses: kafka-go's writer refuses a whole call, before sending any of
// it, when one message is over its BatchBytes (kafka.MessageTooLargeError). Nothing of the call reached Kafka, so
// every row goes again alone: the others are published once, and the row the writer refuses alone is set aside.
func TestRelaySendsAloneTheRowsOfACallTheWriterRefuses(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		var small []string
		for i := range 3 {
			small = append(small, add(t, context.Background(), db, "orders", "order-"+strconv.Itoa(i), i).ID)
		}
		big := addSized(t, db, "orders", "big", 10_000)
		var sent []string
		// The writer's check as kafka-go makes it: any message over its limit refuses the call.
		w := writerFunc(func(_ context.Context, msgs ...kafka.Message) error {
			for _, m := range msgs {
				if len(m.Value) > 5_000 {
					return kafka.MessageTooLargeError{Message: m}
				}
			}
			for _, m := range msgs {
				sent = append(sent, headerMap(m)["ce_id"])
			}
			return nil
		})
		drain(t, outbox.NewRelay(db, w, outbox.RelayOptions{}))
		slices.Sort(sent)
		slices.Sort(small)
		if !slices.Equal(sent, small) {
			t.Fatalf("sent %v, want each row but the oversized one once %v", sent, small)
		}
		for _, m := range rows(t, db) {
			oversized := m.EventID == big.ID
			if m.SentAt == nil || strings.Contains(m.LastError, "Message Size Too Large") != oversized {
				t.Errorf("row %d (oversized %v): sent_at %v, last_error %q", m.ID, oversized, m.SentAt, m.LastError)
			}
		}
	})
}
