package database

import (
	"context"
	"fmt"

	"gorm.io/gorm"
)

// Sweep deletes the rows of a table that match a condition in statements of at most Batch rows each, rather than in
// one DELETE: that one statement holds every row's lock and WAL (on SQLite, the write lock the service's own writes
// need) until the last row is gone, which for a retention backlog can take long. Package outbox's and package dedup's
// cleanups share it.
//
// On PostgreSQL a batch skips rows another sweep holds (FOR UPDATE SKIP LOCKED), so two replicas cleaning up at once
// share the work instead of queueing on each other.
type Sweep struct {
	Table string
	// Key is the column that identifies a row, its primary key. Empty means the row's address (ctid on PostgreSQL,
	// rowid on SQLite), for a table whose key spans several columns.
	//
	// An address is safe here although a ctid changes when its row is updated (or moved by VACUUM FULL or CLUSTER):
	// one statement both picks and deletes, under one snapshot. A picked row is locked (FOR UPDATE), so nobody
	// updates or deletes it before the DELETE, and VACUUM never frees a slot holding a row version a running
	// statement may still see, so a ctid cannot point at another row by then; VACUUM FULL and CLUSTER wait for the
	// table lock the DELETE holds. A row updated by a transaction that committed after the snapshot is locked at its
	// new version, which that snapshot cannot see: the DELETE skips it, and a later batch finds it again if it still
	// matches. Not for a partitioned table, whose ctids repeat across partitions, nor an SQLite table WITHOUT ROWID.
	Key string
	// Where is the condition rows to delete match, with gorm's ? placeholders.
	Where string
	Batch int
}

// SQL is the statement of one batch for dialect; its arguments are Where's, then Batch.
//
// On PostgreSQL the keys are picked into an array (= ANY(ARRAY(...))), not matched with IN (...): PostgreSQL plans IN
// over a LIMIT subquery as a hash semi-join fed by a sequential scan of the whole table, so each batch read every row
// kept and a backlog cost (backlog / Batch) whole-table scans. The array is computed once and its rows found through
// the key's index (or by address): a batch reads its own rows. SQLite already finds IN's rows by rowid.
func (s Sweep) SQL(dialect string) string {
	key := s.Key
	if key == "" {
		key = "rowid"
		if dialect == Postgres {
			key = "ctid"
		}
	}
	pick := "SELECT " + key + " FROM " + s.Table + " WHERE " + s.Where + " LIMIT ?"
	if dialect == Postgres {
		return "DELETE FROM " + s.Table + " WHERE " + key + " = ANY(ARRAY(" + pick + " FOR UPDATE SKIP LOCKED))"
	}
	return "DELETE FROM " + s.Table + " WHERE " + key + " IN (" + pick + ")"
}

// Run deletes batch after batch until one deletes fewer than Batch rows (done is true), or until yield, asked after
// each full batch, says to stop: done is then false and the rest is for a later Run. args are Where's. A batch that
// comes up short because another sweep holds the remaining rows ends the Run too; that sweep goes on until it finds
// none.
func (s Sweep) Run(ctx context.Context, db *gorm.DB, yield func() bool, args ...any) (total int64, done bool, err error) {
	if s.Batch < 1 {
		return 0, false, fmt.Errorf("sweep of %s: batch %d, want at least 1", s.Table, s.Batch)
	}
	del := s.SQL(Dialect(db))
	args = append(args[:len(args):len(args)], s.Batch)
	for {
		res := db.WithContext(ctx).Exec(del, args...)
		if res.Error != nil {
			return total, false, fmt.Errorf("sweep of %s after %d rows: %w", s.Table, total, res.Error)
		}
		total += res.RowsAffected
		if res.RowsAffected < int64(s.Batch) {
			return total, true, nil
		}
		if yield != nil && yield() {
			return total, false, nil
		}
	}
}
