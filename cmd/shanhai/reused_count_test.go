package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/dedup"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/services/order/migrations"
)

// TestLeftPendingReadsTheUnsentRowsOnce: the count runs before the parts
// start, so its cost is the start's. It looked the unsent outbox rows up once
// per PENDING order, a scan of all of them each time (the partial index on
// unsent rows leads with the topic, which the count does not know): an
// order.db with 500,000 PENDING orders and 1,000 unsent rows held the start
// for over a minute, and a run stopped under load leaves both by the
// thousand. The unsent rows must be read once, whatever the number of
// PENDING orders; the count must stay right.
func TestLeftPendingReadsTheUnsentRowsOnce(t *testing.T) {
	data := t.TempDir()
	db, err := database.Open("sqlite://" + filepath.Join(data, "order.db"))
	if err != nil {
		t.Fatal(err)
	}
	if sqlDB, err := db.DB(); err == nil {
		defer sqlDB.Close()
	}
	ctx := context.Background()
	if err := migrate.UpAll(ctx, db, outbox.Migrations, dedup.Migrations, migrations.FS); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	// Orders o0..o5: PENDING with the event sent (o0, o1), PENDING with it
	// unsent (o2), PENDING with one sent and one unsent (o3), PAID (o4),
	// PENDING with no outbox row at all (o5): three stranded.
	for i, status := range []string{"PENDING", "PENDING", "PENDING", "PENDING", "PAID", "PENDING"} {
		id := fmt.Sprint("o", i)
		if err := db.Exec(`INSERT INTO orders (id, user_id, status, total_cents, currency, created_at, updated_at)
VALUES (?, 'ada', ?, 4800, 'EUR', ?, ?)`, id, status, now, now).Error; err != nil {
			t.Fatal(err)
		}
	}
	for i, row := range []struct {
		key  string
		sent any
	}{{"o0", now}, {"o1", now}, {"o2", nil}, {"o3", now}, {"o3", nil}, {"o4", now}} {
		if err := db.Exec(`INSERT INTO outbox (topic, key, event_id, event_type, headers, payload, created_at, sent_at)
VALUES ('shanhai.orders', ?, ?, 'order.created', '{}', '{}', ?, ?)`, row.key, fmt.Sprint("e", i), now, row.sent).Error; err != nil {
			t.Fatal(err)
		}
	}
	n, err := leftPending(data)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("leftPending = %d, want 3 (o0, o1, o5)", n)
	}

	var plan []struct {
		ID, Parent, Notused int
		Detail              string
	}
	if err := db.Raw("EXPLAIN QUERY PLAN " + leftPendingSQL).Scan(&plan).Error; err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, p := range plan {
		lines = append(lines, p.Detail)
	}
	if s := strings.Join(lines, "\n"); strings.Contains(s, "CORRELATED") {
		t.Errorf("the count reads the outbox once per PENDING order:\n%s", s)
	}
}
