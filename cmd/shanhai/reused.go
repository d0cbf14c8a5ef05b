package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/shanhai-dev/shanhai/pkg/database"
)

// leftPendingSQL counts the orders that are PENDING with no event left to
// send: their order.created went to an earlier run's Kafka. One with an
// outbox row still unsent is left out, as this run's relay sends it.
//
// NOT IN, not a correlated NOT EXISTS: SQLite reads the unsent keys once
// into a lookup table, where NOT EXISTS scanned every unsent row again for
// each PENDING order (no index leads with key): on an order.db of 1,000,000
// orders, 500,000 PENDING and 1,000 unsent rows, the start waited 67 s
// (sqlite3 CLI, median of 3 interleaved with the new query's 0.26 s, on a
// loaded 2-core machine).
// outbox.key is NOT NULL, so NOT IN has no NULL to trip on.
const leftPendingSQL = `SELECT count(*) FROM orders o WHERE o.status = 'PENDING'
  AND o.id NOT IN (SELECT x.key FROM outbox x WHERE x.sent_at IS NULL)`

// leftPending counts the orders an earlier embedded run on dataDir left
// mid-saga. -data keeps the SQLite databases (and etcd), but the embedded
// Kafka lives in memory and the JetStream store is emptied at each start
// (it would drop this run's records as duplicates of the earlier run's:
// TestJetStreamStartsEmptyLikeKafka), so an order whose order.created was
// already sent will never be paid or failed. Carrying the earlier run's
// events over is not possible (kfake keeps nothing), and refusing the
// directory would take away what -data is for (the accounts, the orders
// already settled), so the run says how many at start and what to do. It
// may count an order whose payment result was still in the payment
// service's outbox (sent by this run, so the order settles after all):
// the window is the last moments of the earlier run, and the message says
// "may". A directory without an order database (a first run) has none.
func leftPending(dataDir string) (int64, error) {
	path := filepath.Join(dataDir, "order.db")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	db, err := database.Open("sqlite://" + path)
	if err != nil {
		return 0, fmt.Errorf("open the earlier run's orders: %w", err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	var n int64
	if err := db.Raw(leftPendingSQL).Scan(&n).Error; err != nil {
		return 0, fmt.Errorf("count the earlier run's PENDING orders: %w", err)
	}
	return n, nil
}

// leftPendingWarning is the banner's line for n orders leftPending found.
func leftPendingWarning(n int64) string {
	orders, their, they, them := "orders", "their", "they", "them"
	if n == 1 {
		orders, their, they, them = "order", "its", "it", "it"
	}
	return fmt.Sprintf("Warning: %d %s an earlier run on this -data left PENDING had %s events in that run's Kafka and JetStream, "+
		"which this run starts empty, so %s may stay PENDING for good: cancel %s (POST /api/v1/orders/{id}/cancel) or start on a new -data.",
		n, orders, their, they, them)
}
