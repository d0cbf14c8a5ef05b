package migrate_test

import (
	"context"
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
