package dedup_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/dedup"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
)

// Cleanup deletes a backlog of old records in statements of at most its batch each, not in one DELETE that holds
// every record's lock (and SQLite's write lock) until the last is gone; fresh records stay.
func TestCleanupDeletesInBatches(t *testing.T) {
	dedup.SetCleanupBatch(t, 10)
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		setup(t, db)
		for _, id := range []string{"a", "b", "c", "d", "e"} {
			for i := range 5 {
				once(t, db, "consumer-"+id, string(rune('0'+i)))
			}
		}
		once(t, db, "c", "fresh")
		db.Exec("UPDATE processed_events SET processed_at = ? WHERE event_id <> 'fresh'", time.Now().UTC().Add(-48*time.Hour))

		deletes := dbtest.RowsPerStatement(t, db, "DELETE FROM processed_events")
		n, err := dedup.Cleanup(context.Background(), db, time.Now().Add(-24*time.Hour))
		if err != nil || n != 25 {
			t.Fatalf("cleanup removed %d (%v), want 25", n, err)
		}
		if got := deletes(); !slices.Equal(got, []int64{10, 10, 5}) {
			t.Fatalf("records per DELETE %v, want [10 10 5]", got)
		}
		var left []string
		db.Raw("SELECT event_id FROM processed_events").Scan(&left)
		if !slices.Equal(left, []string{"fresh"}) {
			t.Fatalf("left %v, want the fresh record only", left)
		}
	})
}

// One batch of Cleanup on PostgreSQL reads the records it deletes, not the table (the plan of outbox's first batched
// cleanup read every row kept, each batch). Its statement runs under EXPLAIN ANALYZE among 2000 old and 1000 fresh
// records, and the rows its plan read from processed_events are counted.
func TestCleanupBatchReadsItsRowsNotTheTable(t *testing.T) {
	const old, fresh, batch = 2000, 1000, 100
	db := dbtest.Postgres(t)
	setup(t, db)
	err := db.Exec(`INSERT INTO processed_events (consumer, event_id, processed_at)
SELECT 'c', 'e' || g, CASE WHEN g <= ? THEN now() - interval '100 hours' ELSE now() END FROM generate_series(1, ?) g`,
		old, old+fresh).Error
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("ANALYZE processed_events").Error; err != nil {
		t.Fatal(err)
	}
	sweep := database.Sweep{Table: "processed_events", Where: "processed_at < ?", Batch: batch}
	read := dbtest.RowsRead(t, db, "processed_events", sweep.SQL(database.Postgres), time.Now().UTC().Add(-72*time.Hour), batch)
	if read > 2*batch+batch/2 {
		t.Fatalf("one batch of %d read %.0f rows of processed_events' %d, want about twice the batch (picked, then deleted)",
			batch, read, old+fresh)
	}
}
