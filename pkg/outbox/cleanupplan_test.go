package outbox

import (
	"context"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// One batch of Cleanup on PostgreSQL reads the rows it deletes, not the table: matched with IN (subquery), PostgreSQL
// fed a hash semi-join with a sequential scan of every row, so a backlog of n old rows cost n/CleanupBatch whole-table
// scans while Run's rounds waited. The batch's statement runs under EXPLAIN ANALYZE (rolled back), and the rows its
// plan read from outbox, returned or filtered out, are counted: 2100 with IN for a batch of 100 out of 2000 rows.
func TestCleanupBatchReadsItsRowsNotTheTable(t *testing.T) {
	const rows, batch = 2000, 100
	db := oldSentRows(t, rows)
	r := NewRelay(db, down{}, RelayOptions{CleanupBatch: batch})

	sweep := r.cleanupSweep()
	read := dbtest.RowsRead(t, db, "outbox", sweep.SQL(database.Postgres), time.Now().UTC().Add(-72*time.Hour), batch)
	if read > 2*batch+batch/2 {
		t.Fatalf("one batch of %d read %.0f rows of outbox's %d, want about twice the batch (picked, then deleted)",
			batch, read, rows)
	}
}

// Two replicas cleaning up at once each skip the rows the other's batch holds (SKIP LOCKED) instead of waiting for
// them: between them they delete every old row once, and neither fails. The one whose batch comes up short because
// the other holds the rest stops early, which leaves nothing behind: the other goes on until it finds none.
func TestTwoCleanupsAtOnceDeleteEveryRowOnce(t *testing.T) {
	const rows, batch = 3000, 50
	db := oldSentRows(t, rows)
	before := time.Now().UTC().Add(-72 * time.Hour)
	var wg sync.WaitGroup
	var deleted [2]int64
	var errs [2]error
	for i := range 2 {
		wg.Go(func() {
			deleted[i], errs[i] = NewRelay(db, down{}, RelayOptions{CleanupBatch: batch}).Cleanup(t.Context(), before)
		})
	}
	wg.Wait()
	t.Logf("deleted %v", deleted)
	var left int64
	if err := db.Raw("SELECT count(*) FROM outbox").Scan(&left).Error; err != nil {
		t.Fatal(err)
	}
	if errs[0] != nil || errs[1] != nil || deleted[0]+deleted[1] != rows || left != 0 {
		t.Fatalf("the two cleanups deleted %v (%v, %v) of %d rows, %d left", deleted, errs[0], errs[1], rows, left)
	}
}

// oldSentRows is a fresh PostgreSQL database whose outbox holds n rows sent 100 hours ago, its statistics up to date.
func oldSentRows(t *testing.T, n int) *gorm.DB {
	t.Helper()
	ctx := context.Background()
	db := dbtest.Postgres(t)
	if err := migrate.Up(ctx, db, Migrations); err != nil {
		t.Fatal(err)
	}
	err := db.Exec(`INSERT INTO outbox (topic, key, event_id, event_type, headers, payload, created_at, sent_at)
SELECT 't', 'k' || g, 'e' || g, 'x', '{}', '\x00', now() - interval '100 hours', now() - interval '100 hours'
FROM generate_series(1, ?) g`, n).Error
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("ANALYZE outbox").Error; err != nil {
		t.Fatal(err)
	}
	return db
}
