// Package dedup makes event handlers idempotent. Brokers and the outbox deliver at least once, so a consumer can see
// the same event twice (a relay crash between publish and mark, a redelivery after a lost ack). Once records the event id
// in the handler's own database transaction: the side effects and the record commit together or not at all, so a
// duplicate is recognised exactly when the first delivery's effects are durable.
package dedup

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations creates the processed_events table; apply it with migrate.Up next to the service's own set.
// Its versions are tracked in schema_migrations_dedup.
var Migrations fs.FS = migrate.Named("dedup", mustSub(migrations, "migrations"))

// Once records that consumer handled eventID, inside tx (the transaction that also applies the handler's effects).
// It returns first=true when this is the first time, false when the pair is already recorded; then the handler
// should skip its work, commit (or roll back) and acknowledge the message.
//
// Concurrent deliveries of the same event are safe: on PostgreSQL the second insert waits for the first transaction and
// then reports false if it committed (or true if it rolled back); SQLite serialises writers.
func Once(ctx context.Context, tx *gorm.DB, consumer, eventID string) (first bool, err error) {
	if consumer == "" || eventID == "" {
		return false, errors.New("dedup: consumer and event id must not be empty")
	}
	res := tx.WithContext(ctx).Exec(
		"INSERT INTO processed_events (consumer, event_id, processed_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
		consumer, eventID, time.Now().UTC())
	if res.Error != nil {
		return false, fmt.Errorf("dedup %s/%s: %w", consumer, eventID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

// Insert is Once as a clause of the caller's own PostgreSQL statement: an INSERT (gorm's ? placeholders, with its
// arguments) that records the pair once for a row of from (a WITH query of the statement, e.g. one that locks the
// aggregate) and returns 1 only if this is the first time, so a statement can lock, record and report in one round
// trip:
//
//	WITH l AS (SELECT ... FOR UPDATE), d AS (<Insert from "l">) SELECT l.*, EXISTS (SELECT 1 FROM d) FROM l
//
// from must yield at most one row. The concurrency is Once's: a second delivery of the same event waits for the
// first's transaction and then finds the pair recorded.
func Insert(consumer, eventID, from string) (string, []any, error) {
	if consumer == "" || eventID == "" {
		return "", nil, errors.New("dedup: consumer and event id must not be empty")
	}
	return "INSERT INTO processed_events (consumer, event_id, processed_at) SELECT CAST(? AS text), CAST(? AS text), CAST(? AS timestamp) FROM " +
		from + " ON CONFLICT DO NOTHING RETURNING 1", []any{consumer, eventID, time.Now().UTC()}, nil
}

// cleanupBatch is the most records one statement of Cleanup deletes (tests lower it).
var cleanupBatch = 1000

// Cleanup deletes records older than before and returns how many. Keep records longer than any redelivery window
// (broker retention, outbox retry horizon): a duplicate arriving after its record is gone is handled again.
//
// It deletes 1000 records a statement until a statement finds fewer (database.Sweep), so a backlog does not hold every
// record's lock, and on SQLite the write lock the handlers' transactions need, until the last is gone; on PostgreSQL
// two replicas' cleanups skip each other's records. The key spans two columns, so a batch picks records by address.
func Cleanup(ctx context.Context, db *gorm.DB, before time.Time) (int64, error) {
	sweep := database.Sweep{Table: "processed_events", Where: "processed_at < ?", Batch: cleanupBatch}
	n, _, err := sweep.Run(ctx, db, nil, before.UTC())
	if err != nil {
		return n, fmt.Errorf("dedup cleanup: %w", err)
	}
	return n, nil
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // only on a malformed constant path
	}
	return sub
}
