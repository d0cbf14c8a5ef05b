package database_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
)

// A sweep by address (ctid) and a row updated while its batch runs: the update commits after the batch's snapshot
// and before the batch locks that row, so the row it locks has a new ctid. The batch must neither delete a row by a
// stale address nor lose the updated row: it deletes the other row and leaves the updated one for a later batch,
// which finds it again. The batch is held on its first row (an advisory lock in its condition, taken by the test)
// while the test updates the second.
func TestSweepByAddressLeavesARowUpdatedDuringItsBatch(t *testing.T) {
	db := dbtest.Postgres(t)
	ctx := t.Context()
	old := time.Now().UTC().Add(-2 * time.Hour)
	err := db.Exec("CREATE TABLE pairs (a text, b text, at timestamp NOT NULL, PRIMARY KEY (a, b))").Error
	if err == nil {
		err = db.Exec("INSERT INTO pairs VALUES ('x', '1', ?), ('x', '2', ?)", old, old).Error
	}
	if err != nil {
		t.Fatal(err)
	}
	sqlDB, err := db.DB()
	if err != nil {
		t.Fatal(err)
	}
	holder, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_lock(7)"); err != nil {
		t.Fatal(err)
	}

	sweep := database.Sweep{Table: "pairs", Batch: 10,
		Where: "at < ? AND (b <> '1' OR (SELECT count(*) FROM pg_advisory_xact_lock(7)) = 1)"}
	type result struct {
		n   int64
		err error
	}
	swept := make(chan result, 1)
	go func() {
		n, _, err := sweep.Run(context.Background(), db, nil, time.Now().UTC().Add(-time.Hour))
		swept <- result{n, err}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int64
		err := db.Raw(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting).Error
		if err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sweep does not wait on its first row after 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := db.Exec("UPDATE pairs SET b = '2x' WHERE b = '2'").Error; err != nil {
		t.Fatal(err)
	}
	if _, err := holder.ExecContext(ctx, "SELECT pg_advisory_unlock(7)"); err != nil {
		t.Fatal(err)
	}
	r := <-swept
	if r.err != nil || r.n != 1 {
		t.Fatalf("sweep deleted %d (%v), want 1: the row not updated", r.n, r.err)
	}
	var left []string
	if err := db.Raw("SELECT b FROM pairs ORDER BY b").Scan(&left).Error; err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(left, []string{"2x"}) {
		t.Fatalf("left %v, want the updated row", left)
	}
	n, _, err := sweep.Run(ctx, db, nil, time.Now().UTC().Add(-time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("a later sweep deleted %d (%v), want the updated row", n, err)
	}
}
