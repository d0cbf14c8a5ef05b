package migrate_test

import (
	"context"
	"database/sql"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// A start whose later migration fails still records the sums of the ones it
// applied before it: they are applied, and editing one of them along with the
// fix of the failed one must be refused at the next start, not taken as what
// was applied.
func TestEditBesideAFailedMigrationIsRefused(t *testing.T) {
	const broken = "-- +goose Up\nINSERT INTO no_such_table (id) VALUES (1);\n"
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		set := fstest.MapFS{
			"0001_widgets.sql": {Data: []byte(widgetsV1)},
			"0002_gadgets.sql": {Data: []byte(broken)},
		}
		if err := migrate.Up(ctx, db, set); err == nil {
			t.Fatal("a broken 0002 was applied")
		}
		if err := db.Exec("SELECT id FROM widgets").Error; err != nil {
			t.Fatalf("0001 not applied before the failure: %v", err)
		}
		fixed := fstest.MapFS{
			"0001_widgets.sql": {Data: []byte(widgetsEdited)},
			"0002_gadgets.sql": {Data: []byte(gadgets)},
		}
		wantRefused(t, migrate.Up(ctx, db, fixed))
	})
}

// A start cut short (its context ended: a SIGTERM or a start-up deadline while a long migration ran) after some
// migrations were applied records their sums all the same: the sums were written with that ended context, which
// failed at once, so the next start took the files as they were then for what had run.
func TestEditBesideAnInterruptedMigrationIsRefused(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		interrupted := migrate.GoStep{Version: 2, Name: "slow", Up: func(ctx context.Context, _ *sql.Tx) error {
			cancel() // the start is stopped while this step runs
			<-ctx.Done()
			return ctx.Err()
		}}
		files := fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsV1)}}
		if err := migrate.Up(ctx, db, migrate.WithGo(files, interrupted)); err == nil {
			t.Fatal("a start whose context ended reported success")
		}
		if err := db.Exec("SELECT id FROM widgets").Error; err != nil {
			t.Fatalf("0001 not applied before the interruption: %v", err)
		}
		done := migrate.GoStep{Version: 2, Name: "slow", Up: func(context.Context, *sql.Tx) error { return nil }}
		edited := fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsEdited)}}
		wantRefused(t, migrate.Up(context.Background(), db, migrate.WithGo(edited, done)))
	})
}
