package migrations

import (
	"context"
	"encoding/base64"
	"fmt"
	"io/fs"
	"maps"
	"testing"
	"testing/fstest"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
)

// upTo migrates db as the release with the SQL files up to version v did.
func upTo(ctx context.Context, db *gorm.DB, v int) error {
	names, err := fs.Glob(FS, fmt.Sprintf("000[1-%d]_*.sql", v))
	if err != nil {
		return err
	}
	set := fstest.MapFS{}
	for _, name := range names {
		b, err := fs.ReadFile(FS, name)
		if err != nil {
			return err
		}
		set[name] = &fstest.MapFile{Data: b}
	}
	return migrate.UpAll(ctx, db, outbox.Migrations, set)
}

// oldDeadLetter inserts a dead letter as the consumer wrote it before it
// named orders: the columns of 0001 only, the event's data kept as base64.
func oldDeadLetter(t *testing.T, db *gorm.DB, id, eventType, reason, payload string) {
	t.Helper()
	err := db.Exec(`INSERT INTO dead_letters (id, consumer, subject, msg_id, event_id, event_type, reason, payload_base64, headers, created_at)
VALUES (?, 'payment', 'shanhai.orders', ?, ?, ?, ?, ?, '{}', ?)`, id, "msg-"+id, "ev-"+id, eventType, reason,
		base64.StdEncoding.EncodeToString([]byte(payload)), time.Now().UTC()).Error
	if err != nil {
		t.Fatal(err)
	}
}

func orderIDs(t *testing.T, db *gorm.DB) map[string]string {
	t.Helper()
	var rows []struct{ ID, OrderID string }
	if err := db.Table("dead_letters").Select("id", "order_id").Find(&rows).Error; err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, r := range rows {
		m[r.ID] = r.OrderID
	}
	return m
}

// TestDeadLetterOrderFill: dead letters recorded before 0003 (an
// order.created's) or before bb0204e (an order.cancelled's) named no order,
// so a cancel did not find the dead charge and the settle round found
// neither. Version 4 names the order from the stored payload, for the
// messages given up on after their retries only, as the consumer names
// them now; an invalid message, an undecodable payload or another event
// stays unnamed, and a named row is left as it is. Run again, it changes
// nothing.
func TestDeadLetterOrderFill(t *testing.T) {
	const retried = "still failing after 10 deliveries: charge order o: payment provider fault: simulated outage"
	data := func(orderID string) string {
		return fmt.Sprintf(`{"order_id":%q,"user_id":"alice","total_cents":5000,"currency":"EUR"}`, orderID)
	}
	for dialect, db := range storetest.Databases(t, func(ctx context.Context, db *gorm.DB) error { return upTo(ctx, db, 2) }) {
		t.Run(dialect, func(t *testing.T) {
			ctx := context.Background()
			// Written by the releases before 0003: no order_id column.
			oldDeadLetter(t, db, "created", "order.created", retried, data("o-created"))
			oldDeadLetter(t, db, "invalid", "order.created", "charge order o-invalid: invalid payment request: the event is for user \"mallory\"", data("o-invalid"))
			oldDeadLetter(t, db, "garbled", "order.created", retried, "\xff not json")
			oldDeadLetter(t, db, "control", "order.created", retried, data("o\x01"))
			oldDeadLetter(t, db, "other", "order.shipped", retried, data("o-other"))
			if err := upTo(ctx, db, 3); err != nil {
				t.Fatal(err)
			}
			// Written between 0003 and bb0204e: an order.created named, an
			// order.cancelled not.
			oldDeadLetter(t, db, "cancelled", "order.cancelled", retried, data("o-cancelled"))
			oldDeadLetter(t, db, "named", "order.created", retried, data("o-payload"))
			if err := db.Exec("UPDATE dead_letters SET order_id = 'o-named' WHERE id = 'named'").Error; err != nil {
				t.Fatal(err)
			}

			if err := migrate.UpAll(ctx, db, outbox.Migrations, Set()); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"created": "o-created", "cancelled": "o-cancelled", "named": "o-named",
				"invalid": "", "garbled": "", "control": "", "other": ""}
			if got := orderIDs(t, db); !maps.Equal(got, want) {
				t.Fatalf("dead letters' orders = %v; want %v", got, want)
			}

			again := migrate.WithGo(Set(), migrate.GoStep{Version: 100, Name: "dead_letter_order_fill_again", Up: deadLetterOrderFill})
			if err := migrate.UpAll(ctx, db, outbox.Migrations, again); err != nil {
				t.Fatal(err)
			}
			if got := orderIDs(t, db); !maps.Equal(got, want) {
				t.Fatalf("after a second run, dead letters' orders = %v; want %v", got, want)
			}
		})
	}
}
