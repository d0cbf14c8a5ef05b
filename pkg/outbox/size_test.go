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

// writeCounts wraps w and counts the WriteMessages calls and those refused (in part or whole) for a message's size.
type writeCounts struct {
	w              outbox.Writer
	calls, refused atomic.Int32
}

func (c *writeCounts) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	c.calls.Add(1)
	err := c.w.WriteMessages(ctx, msgs...)
	if kafkasize.TooLarge(err) {
		c.refused.Add(1)
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

		drain(t, outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{}))
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
		w := &writeCounts{w: newWriter(t, bs)}
		drain(t, outbox.NewRelay(db, w, outbox.RelayOptions{}))
		if w.refused.Load() == 0 {
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
		drain(t, outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{}))
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

// TestRelaySendsMidSizedRowsInFewCalls: with NewWriter's BatchBytes at 64 MiB (61f08a6), kafka-go put a round of 60
// rows of 60 KB for a default topic (max.message.bytes about 1 MB) in 3 partition batches of about 1.2 MB; the broker
// refused each whole and the relay sent every row again alone, 61 calls a round (found by review). Now the relay's
// calls hold at most 1 MB, which the topic takes: the rows go out in 4 calls none of which is refused. A 2 MiB row of
// the same round goes in a call of its own, is refused alone and set aside.
func TestRelaySendsMidSizedRowsInFewCalls(t *testing.T) {
	bs := brokers(t)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		topic := newTopic(t, bs)
		migrated(t, db)
		var ids []string
		for i := range 60 {
			ids = append(ids, addSized(t, db, topic, "order-"+strconv.Itoa(i), 60_000).ID)
		}
		big := addSized(t, db, topic, "big", 2<<20)
		w := &writeCounts{w: newWriter(t, bs)}
		drain(t, outbox.NewRelay(db, w, outbox.RelayOptions{}))
		// About 3.7 MB of mid-sized rows in calls of at most 1 MB (4 calls), and the big row's own call.
		if calls, refused := w.calls.Load(), w.refused.Load(); calls > 6 || refused != 1 {
			t.Errorf("%d WriteMessages calls, %d refused for size; want at most 6, only the big row's refused", calls, refused)
		}
		count := onKafka(t, bs, topic)
		for _, id := range ids {
			if count[id] != 1 {
				t.Errorf("event %s %d times on Kafka, want once", id, count[id])
			}
		}
		if len(count) != len(ids) {
			t.Errorf("Kafka holds %d distinct events, want the %d mid-sized ones", len(count), len(ids))
		}
		for _, m := range rows(t, db) {
			oversized := m.EventID == big.ID
			if m.SentAt == nil || (m.LastError != "") != oversized {
				t.Errorf("row %d (oversized %v): sent_at %v, last_error %q", m.ID, oversized, m.SentAt, m.LastError)
			}
		}
	})
}
