package outbox

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// One batch of Cleanup on PostgreSQL reads the rows it deletes, not the table: matched with IN (subquery), PostgreSQL
// fed a hash semi-join with a sequential scan of every row, so a backlog of n old rows cost n/CleanupBatch whole-table
// scans while Run's rounds waited. The batch's statement runs under EXPLAIN ANALYZE (rolled back), and the rows its
// plan read from outbox, returned or filtered out, are counted: 2100 with IN for a batch of 100 out of 2000 rows.
func TestCleanupBatchReadsItsRowsNotTheTable(t *testing.T) {
	ctx := context.Background()
	db := dbtest.Postgres(t)
	if err := migrate.Up(ctx, db, Migrations); err != nil {
		t.Fatal(err)
	}
	const rows, batch = 2000, 100
	err := db.Exec(`INSERT INTO outbox (topic, key, event_id, event_type, headers, payload, created_at, sent_at)
SELECT 't', 'k' || g, 'e' || g, 'x', '{}', '\x00', now() - interval '100 hours', now() - interval '100 hours'
FROM generate_series(1, ?) g`, rows).Error
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("ANALYZE outbox").Error; err != nil {
		t.Fatal(err)
	}
	r := NewRelay(db, down{}, RelayOptions{CleanupBatch: batch})

	tx := db.Begin()
	defer tx.Rollback()
	var out []byte
	err = tx.Raw("EXPLAIN (ANALYZE, FORMAT JSON) "+r.cleanupSQL(), time.Now().UTC().Add(-72*time.Hour), batch).
		Row().Scan(&out)
	if err != nil {
		t.Fatal(err)
	}
	var plans []struct{ Plan planNode }
	if err := json.Unmarshal(out, &plans); err != nil || len(plans) != 1 {
		t.Fatalf("EXPLAIN output %s: %v", out, err)
	}
	if read := plans[0].Plan.outboxRowsRead(); read > 2*batch+batch/2 {
		t.Fatalf("one batch of %d read %.0f rows of outbox's %d, want about twice the batch (picked, then deleted)\n%s",
			batch, read, rows, out)
	}
}

// planNode is the part of a node of EXPLAIN (ANALYZE, FORMAT JSON) that says how many rows it read.
type planNode struct {
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Loops    float64    `json:"Actual Loops"`
	Removed  float64    `json:"Rows Removed by Filter"`
	Plans    []planNode `json:"Plans"`
}

// outboxRowsRead sums, over n and the nodes below it that scan outbox, the rows they returned and filtered out.
func (n planNode) outboxRowsRead() float64 {
	var read float64
	if n.Relation == "outbox" && n.Plans == nil {
		read = (n.Rows + n.Removed) * n.Loops // both are per loop
	}
	for _, c := range n.Plans {
		read += c.outboxRowsRead()
	}
	return read
}
