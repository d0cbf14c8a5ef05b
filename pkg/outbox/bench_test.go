package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// BenchmarkRelayThroughput drains batches of committed rows (distinct keys, the common case) from PostgreSQL (or SQLite) to real
// Kafka with acks=all and reports rows/s. Inserting the rows is not timed.
//
//	go test -run '^$' -bench RelayThroughput -benchtime 10x ./outbox
func BenchmarkRelayThroughput(b *testing.B) {
	cases := []struct {
		dialect string
		batch   int
		open    func(testing.TB) *gorm.DB
	}{
		{"postgres", 100, dbtest.Postgres},
		{"postgres", 500, dbtest.Postgres},
		{"sqlite", 500, dbtest.SQLite},
	}
	for _, c := range cases {
		batch := c.batch
		b.Run(fmt.Sprintf("%s/batch=%d", c.dialect, batch), func(b *testing.B) {
			bs := brokers(b)
			topic := newTopic(b, bs)
			db := c.open(b)
			if err := migrate.Up(context.Background(), db, outbox.Migrations); err != nil {
				b.Fatal(err)
			}
			r := outbox.NewRelay(db, newWriter(b, bs), outbox.RelayOptions{BatchSize: batch})
			const rowsPerOp = 2000
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				fill(b, db, topic, i, rowsPerOp)
				b.StartTimer()
				start := time.Now()
				drain(b, r)
				elapsed += time.Since(start)
			}
			b.ReportMetric(float64(rowsPerOp*b.N)/elapsed.Seconds(), "rows/s")
		})
	}
}

func fill(b *testing.B, db *gorm.DB, topic string, round, n int) {
	b.Helper()
	err := db.Transaction(func(tx *gorm.DB) error {
		for j := range n {
			key := fmt.Sprintf("order-%d-%d", round, j)
			e, err := event.New("order.created", "/services/order", key, map[string]any{"order_id": key, "total_cents": j})
			if err != nil {
				return err
			}
			if err := outbox.Add(context.Background(), tx, topic, key, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
