package outbox_test

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// TestRelayMarksSentWhenTheDatabaseDropsItsConnectionAfterKafkaAcked: PostgreSQL ends the relay's pooled connection
// (pg_terminate_backend: a failover, a pooler restart, a firewall dropping an idle connection) after Kafka took the
// round's rows and before the UPDATE marking them sent. The round failed on that one statement and left the rows
// leased: Lease later (25 s by default) they went to Kafka a second time, and their keys' next rows waited as long.
// Now the statement runs again on another connection and the rows are marked sent in the same round.
func TestRelayMarksSentWhenTheDatabaseDropsItsConnectionAfterKafkaAcked(t *testing.T) {
	bs := brokers(t)
	url := dbtest.PostgresURL(t)
	db := migrated(t, open(t, url))
	admin := open(t, url)
	topic := newTopic(t, bs)
	ctx := context.Background()
	e := add(t, ctx, db, topic, "order-1", 1)
	kw := newWriter(t, bs)
	terminated := 0
	w := writerFunc(func(ctx context.Context, msgs ...kafka.Message) error {
		err := kw.WriteMessages(ctx, msgs...)
		// Every connection of the relay's pool: the claim's, which the mark would reuse, included.
		if qerr := admin.Raw(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&terminated).Error; qerr != nil {
			t.Errorf("terminate the relay's connections: %v", qerr)
		}
		return err
	})
	if _, err := outbox.NewRelay(db, w, outbox.RelayOptions{}).RunOnce(ctx); err != nil {
		t.Errorf("round with its connection dropped after Kafka acked: %v", err)
	}
	if terminated == 0 {
		t.Fatal("no connection of the relay was terminated: the test exercised nothing")
	}
	if ms := rows(t, db); ms[0].SentAt == nil || ms[0].Attempts != 1 || ms[0].LastError != "" {
		t.Errorf("row Kafka took: sent_at %v, attempts %d, last_error %q; want marked sent once, to be sent no more",
			ms[0].SentAt, ms[0].Attempts, ms[0].LastError)
	}
	if n := onKafka(t, bs, topic)[e.ID]; n != 1 {
		t.Errorf("event on Kafka %d times, want once", n)
	}
}
