package migrate_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

const (
	widgetsV1 = "-- +goose Up\nCREATE TABLE widgets (id TEXT PRIMARY KEY);\n-- +goose Down\nDROP TABLE widgets;\n"
	// The same migration "fixed" in place after it ran.
	widgetsEdited = "-- +goose Up\nCREATE TABLE widgets (id TEXT PRIMARY KEY, name TEXT);\n-- +goose Down\nDROP TABLE widgets;\n"
	gadgets       = "-- +goose Up\nCREATE TABLE gadgets (id TEXT PRIMARY KEY);\n"
)

// An applied migration edited afterwards stops the start with the file's name, on the usual restart (nothing
// pending: the one-query path) and when a newer migration is pending (goose's path), and nothing after it is
// applied. The same file checked out with CRLF line endings is not an edit.
func TestEditedMigrationIsRefused(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		if err := migrate.Up(ctx, db, fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsV1)}}); err != nil {
			t.Fatal(err)
		}
		edited := fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsEdited)}}
		wantRefused(t, migrate.Up(ctx, db, edited))

		edited["0002_gadgets.sql"] = &fstest.MapFile{Data: []byte(gadgets)}
		wantRefused(t, migrate.Up(ctx, db, edited))
		if err := db.Exec("SELECT id FROM gadgets").Error; err == nil {
			t.Fatal("0002 was applied on top of an edited 0001")
		}

		crlf := fstest.MapFS{
			"0001_widgets.sql": {Data: []byte(strings.ReplaceAll(widgetsV1, "\n", "\r\n"))},
			"0002_gadgets.sql": {Data: []byte(gadgets)},
		}
		if err := migrate.Up(ctx, db, crlf); err != nil {
			t.Fatalf("CRLF checkout of the applied file: %v", err)
		}
		if err := db.Exec("SELECT id FROM gadgets").Error; err != nil {
			t.Fatalf("0002 not applied: %v", err)
		}
	})
}

func wantRefused(t *testing.T, err error) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "0001_widgets.sql was changed after it was applied") {
		t.Fatalf("err %v: want the edited 0001_widgets.sql refused", err)
	}
}

// A database migrated before checksums were kept (no checksum table, or rows missing) gets the current files'
// sums at its next start, and from then on an edit is caught.
func TestChecksumsRecordedForOlderDatabases(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		set := fstest.MapFS{"0001_widgets.sql": {Data: []byte(widgetsV1)}, "0002_gadgets.sql": {Data: []byte(gadgets)}}
		if err := migrate.Up(ctx, db, set); err != nil {
			t.Fatal(err)
		}
		if got := sums(t, db); got != 2 {
			t.Fatalf("%d checksums recorded, want 2", got)
		}
		if err := db.Exec("DROP TABLE schema_migrations_checksums").Error; err != nil {
			t.Fatal(err)
		}
		if err := migrate.Up(ctx, db, set); err != nil {
			t.Fatalf("start on a database without checksums: %v", err)
		}
		if got := sums(t, db); got != 2 {
			t.Fatalf("%d checksums recorded again, want 2", got)
		}
		if err := db.Exec("DELETE FROM schema_migrations_checksums WHERE version_id = 2").Error; err != nil {
			t.Fatal(err)
		}
		if err := migrate.Up(ctx, db, set); err != nil {
			t.Fatalf("start with one checksum missing: %v", err)
		}
		if got := sums(t, db); got != 2 {
			t.Fatalf("%d checksums after a missing one was recorded, want 2", got)
		}
		set["0001_widgets.sql"] = &fstest.MapFile{Data: []byte(widgetsEdited)}
		wantRefused(t, migrate.Up(ctx, db, set))
	})
}

func sums(t *testing.T, db *gorm.DB) int {
	t.Helper()
	var n int
	if err := db.Raw("SELECT COUNT(*) FROM schema_migrations_checksums").Scan(&n).Error; err != nil {
		t.Fatal(err)
	}
	return n
}
