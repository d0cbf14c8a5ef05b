package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/dedup"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// brokers returns the test Kafka's bootstrap addresses (testenv.Kafka fails the test with the deps hint when it is down).
func brokers(t testing.TB) []string {
	t.Helper()
	return testenv.Kafka(t)
}

// newTopic creates a fresh 3-partition topic with the given configuration and waits until every partition has a leader.
func newTopic(t testing.TB, bs []string, config ...kafka.ConfigEntry) string {
	t.Helper()
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	topic := "outbox-test-" + hex.EncodeToString(b)
	conn, err := kafka.Dial("tcp", bs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tc := kafka.TopicConfig{Topic: topic, NumPartitions: 3, ReplicationFactor: 1, ConfigEntries: config}
	if err := cc.CreateTopics(tc); err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p := range 3 {
		for {
			lc, err := kafka.DialLeader(context.Background(), "tcp", bs[0], topic, p)
			if err == nil {
				lc.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("topic %s partition %d has no leader: %v", topic, p, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return topic
}

// readAll returns every message of topic, partition by partition in offset order, up to the current end offsets.
func readAll(t testing.TB, bs []string, topic string) []kafka.Message {
	t.Helper()
	var all []kafka.Message
	for p := range 3 {
		lc, err := kafka.DialLeader(context.Background(), "tcp", bs[0], topic, p)
		if err != nil {
			t.Fatal(err)
		}
		end, err := lc.ReadLastOffset()
		lc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: bs, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for {
			m, err := r.ReadMessage(ctx)
			if err != nil {
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			all = append(all, m)
			if m.Offset >= end-1 {
				break
			}
		}
		cancel()
		r.Close()
	}
	return all
}

func headerMap(m kafka.Message) map[string]string {
	h := map[string]string{}
	for _, kh := range m.Headers {
		h[kh.Key] = string(kh.Value)
	}
	return h
}

func drain(t testing.TB, r *outbox.Relay) {
	t.Helper()
	for {
		n, err := r.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func TestRelayMessagesOnKafkaCarryCloudEventsAndTrace(t *testing.T) {
	bs := brokers(t)
	topic := newTopic(t, bs)
	db := migrated(t, dbtest.Postgres(t))
	ctx, span := otel.Tracer("test").Start(context.Background(), "POST /api/v1/orders")
	var sent []event.Envelope
	for i := range 6 {
		sent = append(sent, add(t, ctx, db, topic, fmt.Sprintf("order-%d", i%2), i))
	}
	span.End()
	before := time.Now().Truncate(time.Millisecond) // Kafka record times are whole milliseconds
	drain(t, outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{}))
	after := time.Now()

	got := readAll(t, bs, topic)
	if len(got) != len(sent) {
		t.Fatalf("%d messages on Kafka, want %d", len(got), len(sent))
	}
	byID := map[string]event.Envelope{}
	for _, e := range sent {
		byID[e.ID] = e
	}
	partitionOfKey := map[string]int{}
	for _, m := range got {
		h := headerMap(m)
		e, err := event.FromHeaders(h, m.Value)
		if err != nil {
			t.Fatalf("message at %d/%d: %v", m.Partition, m.Offset, err)
		}
		want, ok := byID[e.ID]
		if !ok || e.Type != want.Type || e.Source != want.Source || e.Subject != want.Subject ||
			!e.Time.Equal(want.Time) || string(e.Data) != string(want.Data) {
			t.Fatalf("message %+v does not match a sent event", e)
		}
		if string(m.Key) != want.Subject {
			t.Fatalf("key %q, want the aggregate id %q", m.Key, want.Subject)
		}
		if p, seen := partitionOfKey[string(m.Key)]; seen && p != m.Partition {
			t.Fatalf("key %s on partitions %d and %d", m.Key, p, m.Partition)
		}
		partitionOfKey[string(m.Key)] = m.Partition
		tp := h["traceparent"]
		if parts := strings.Split(tp, "-"); len(parts) != 4 || parts[1] != span.SpanContext().TraceID().String() {
			t.Fatalf("traceparent %q does not continue trace %s", tp, span.SpanContext().TraceID())
		}
		if h["content-type"] != "application/json" {
			t.Fatalf("content-type %q", h["content-type"])
		}
		// The record time is the publish time (not 1970, which time-based retention would delete at once).
		if m.Time.Before(before) || m.Time.After(after) {
			t.Fatalf("record time %v, want the publish time within [%v, %v]", m.Time, before, after)
		}
	}
}

// TestOutboxResendsAfterCrash: a relay process publishes and dies before marking the row sent. The row stays unsent,
// the next relay publishes it again, and the consumer's dedup drops the second copy.
func TestOutboxResendsAfterCrash(t *testing.T) {
	bs := brokers(t)
	for _, dialect := range []string{database.Postgres, database.SQLite} {
		t.Run(dialect, func(t *testing.T) {
			topic := newTopic(t, bs)
			url := dbtest.SQLiteURL(t)
			if dialect == database.Postgres {
				url = dbtest.PostgresURL(t)
			}
			db, err := database.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sqlDB, _ := db.DB(); sqlDB.Close() })
			migrated(t, db)
			e := add(t, context.Background(), db, topic, "order-1", 1)

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), crashEnvDB+"="+url, crashEnvBrokers+"="+strings.Join(bs, ","))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != crashExitCode {
				t.Fatalf("crash helper: %v\n%s", err, out)
			}
			if n := len(readAll(t, bs, topic)); n != 1 {
				t.Fatalf("%d messages after the crash, want 1 (published before dying)", n)
			}
			if ms := rows(t, db); ms[0].SentAt != nil || ms[0].Attempts != 0 {
				t.Fatalf("row after crash %+v: want unsent, as the marking statement never ran", ms[0])
			}

			next := outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{})
			if dialect == database.Postgres {
				// The dead relay's lease still holds the row: nobody sends it until the lease runs out.
				if n, err := next.RunOnce(context.Background()); err != nil || n != 0 {
					t.Fatalf("claimed %d rows (%v) under the dead relay's lease, want 0", n, err)
				}
				leaseEnd := time.UnixMilli(rows(t, db)[0].NextAttemptAt)
				if d := time.Until(leaseEnd); d < 0 || d > crashRelayOptions.Lease {
					t.Fatalf("lease ends in %v, want within %v", d, crashRelayOptions.Lease)
				}
				time.Sleep(time.Until(leaseEnd) + 10*time.Millisecond)
			}
			drain(t, next)
			if ms := rows(t, db); ms[0].SentAt == nil {
				t.Fatal("row not sent after restart")
			}
			got := readAll(t, bs, topic)
			if len(got) != 2 || headerMap(got[0])["ce_id"] != e.ID || headerMap(got[1])["ce_id"] != e.ID {
				t.Fatalf("want the event twice on Kafka, got %d messages", len(got))
			}

			// The consumer: apply the effect once per event id, in the same transaction as the dedup record.
			consumer := dbtest.SQLite(t)
			if err := migrate.Up(context.Background(), consumer, dedup.Migrations); err != nil {
				t.Fatal(err)
			}
			consumer.Exec("CREATE TABLE effects (event_id TEXT)")
			var firsts []bool
			for _, m := range got {
				err := consumer.Transaction(func(tx *gorm.DB) error {
					first, err := dedup.Once(context.Background(), tx, "test", headerMap(m)["ce_id"])
					firsts = append(firsts, first)
					if err != nil || !first {
						return err
					}
					return tx.Exec("INSERT INTO effects VALUES (?)", headerMap(m)["ce_id"]).Error
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			var effects int64
			consumer.Raw("SELECT count(*) FROM effects").Scan(&effects)
			if !slices.Equal(firsts, []bool{true, false}) || effects != 1 {
				t.Fatalf("dedup firsts %v, effects %d: want [true false] and 1", firsts, effects)
			}
		})
	}
}

// countingWriter wraps a real Kafka writer: it counts publishes per event id and records any moment at which one
// event is being published by two relays at once.
type countingWriter struct {
	w        outbox.Writer
	mu       *sync.Mutex
	inFlight map[string]bool
	count    map[string]int
	overlaps *[]string
	mine     int
}

func (c *countingWriter) WriteMessages(ctx context.Context, msgs ...kafka.Message) error {
	ids := make([]string, len(msgs))
	c.mu.Lock()
	for i, m := range msgs {
		ids[i] = headerMap(m)["ce_id"]
		if c.inFlight[ids[i]] {
			*c.overlaps = append(*c.overlaps, ids[i])
		}
		c.inFlight[ids[i]] = true
	}
	c.mu.Unlock()
	err := c.w.WriteMessages(ctx, msgs...)
	var werrs kafka.WriteErrors
	perMessage := errors.As(err, &werrs) && len(werrs) == len(msgs)
	c.mu.Lock()
	for i, id := range ids {
		delete(c.inFlight, id)
		// Count acknowledged publishes; a failed one is retried and (on the broker) checked by the read-back.
		if err == nil || (perMessage && werrs[i] == nil) {
			c.count[id]++
			c.mine++
		}
	}
	c.mu.Unlock()
	return err
}

// TestTwoRelaysNeverPublishTheSameRow runs two relays (separate connection pools, as two replicas) on one PostgreSQL
// table and checks, in the writers and on Kafka, that every row is published exactly once and in id order per key.
func TestTwoRelaysNeverPublishTheSameRow(t *testing.T) {
	bs := brokers(t)
	topic := newTopic(t, bs)
	url := dbtest.PostgresURL(t)
	db := migrated(t, open(t, url))
	const rowsN, keys = 1200, 40
	var ids []string
	keyOf := map[string]string{}
	err := db.Transaction(func(tx *gorm.DB) error {
		for i := range rowsN {
			key := fmt.Sprintf("order-%d", i%keys)
			e, _ := event.New("order.created", "/services/order", key, map[string]int{"n": i})
			if err := outbox.Add(context.Background(), tx, topic, key, e); err != nil {
				return err
			}
			ids = append(ids, e.ID)
			keyOf[e.ID] = key
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	inFlight, count, overlaps := map[string]bool{}, map[string]int{}, []string{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	writers := make([]*countingWriter, 2)
	for i := range writers {
		writers[i] = &countingWriter{w: newWriter(t, bs), mu: &mu, inFlight: inFlight, count: count, overlaps: &overlaps}
		r := outbox.NewRelay(open(t, url), writers[i], outbox.RelayOptions{BatchSize: 25, Interval: 5 * time.Millisecond})
		wg.Add(1)
		go func() { defer wg.Done(); _ = r.Run(ctx) }()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var pending int64
		if err := db.Raw("SELECT count(*) FROM outbox WHERE sent_at IS NULL").Scan(&pending).Error; err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d rows still unsent", pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	wg.Wait()

	if len(overlaps) > 0 {
		t.Fatalf("%d events published by both relays at once, e.g. %s", len(overlaps), overlaps[0])
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Fatalf("event %s published %d times", id, count[id])
		}
	}
	t.Logf("relay A published %d, relay B %d", writers[0].mine, writers[1].mine)
	if writers[0].mine == 0 || writers[1].mine == 0 {
		t.Fatalf("one relay did all the work (%d/%d): the test did not exercise concurrency", writers[0].mine, writers[1].mine)
	}

	got := readAll(t, bs, topic)
	if len(got) != rowsN {
		t.Fatalf("%d messages on Kafka, want %d", len(got), rowsN)
	}
	seen := map[string]bool{}
	perKey := map[string][]string{}
	for _, m := range got {
		id := headerMap(m)["ce_id"]
		if seen[id] {
			t.Fatalf("event %s twice on Kafka", id)
		}
		seen[id] = true
		perKey[string(m.Key)] = append(perKey[string(m.Key)], id)
	}
	for _, id := range ids {
		k := keyOf[id]
		if len(perKey[k]) == 0 || perKey[k][0] != id {
			t.Fatalf("key %s: event %s out of order on Kafka", k, id)
		}
		perKey[k] = perKey[k][1:]
	}
}

func open(t testing.TB, url string) *gorm.DB {
	t.Helper()
	db, err := database.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			sqlDB.Close()
		}
	})
	return db
}

// TestRelaySetsAsideARowTooLargeForKafka: a row over the topic's limit (1 MB by default) was refused with the whole
// batch, so it failed every row claimed with it, and as its key's oldest unsent row it held that key back forever.
// Now the other rows go out, the oversized row is set aside (sent_at with its last_error, kept past retention) and
// the rows behind it on its key follow.
func TestRelaySetsAsideARowTooLargeForKafka(t *testing.T) {
	bs := brokers(t)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		topic := newTopic(t, bs)
		migrated(t, db)
		ctx := context.Background()
		before := add(t, ctx, db, topic, "other", 0)
		big, err := event.New("order.created", "/services/order", "big", map[string]string{"note": strings.Repeat("x", 2<<20)})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Transaction(func(tx *gorm.DB) error { return outbox.Add(ctx, tx, topic, "big", big) }); err != nil {
			t.Fatal(err)
		}
		behind := add(t, ctx, db, topic, "big", 1)
		after := add(t, ctx, db, topic, "other", 2)

		r := outbox.NewRelay(db, newWriter(t, bs), outbox.RelayOptions{})
		drain(t, r)
		var ids []string
		for _, m := range readAll(t, bs, topic) {
			ids = append(ids, headerMap(m)["ce_id"])
		}
		slices.Sort(ids)
		want := []string{before.ID, behind.ID, after.ID}
		slices.Sort(want)
		if !slices.Equal(ids, want) {
			t.Fatalf("on Kafka %v, want every row but the oversized one %v", ids, want)
		}
		for _, m := range rows(t, db) {
			switch {
			case m.EventID == big.ID && (m.SentAt == nil || !strings.Contains(m.LastError, "Message Size Too Large")):
				t.Fatalf("oversized row not set aside: sent_at %v, last_error %q", m.SentAt, m.LastError)
			case m.EventID != big.ID && (m.SentAt == nil || m.LastError != ""):
				t.Fatalf("row %s: sent_at %v, last_error %q", m.EventID, m.SentAt, m.LastError)
			}
		}
		// The set-aside row is what is left of the event: retention does not delete it.
		if n, err := r.Cleanup(ctx, time.Now().Add(time.Hour)); err != nil || n != 3 {
			t.Fatalf("cleanup deleted %d (%v), want the 3 published rows", n, err)
		}
		if ms := rows(t, db); len(ms) != 1 || ms[0].EventID != big.ID {
			t.Fatalf("after cleanup %d rows left, want the set-aside one", len(ms))
		}
	})
}
