package storetest_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
)

func TestDatabasesAreFreshAndMigratedOnEachDialect(t *testing.T) {
	migrate := func(ctx context.Context, db *gorm.DB) error {
		return db.WithContext(ctx).Exec("CREATE TABLE marks (id INTEGER PRIMARY KEY)").Error
	}
	first := storetest.Databases(t, migrate)
	if got := slices.Sorted(maps.Keys(first)); !slices.Equal(got, []string{database.Postgres, database.SQLite}) {
		t.Fatalf("dialects = %v", got)
	}
	for name, db := range first {
		if database.Dialect(db) != name {
			t.Errorf("%s: opened a %s database", name, database.Dialect(db))
		}
		if err := db.Exec("INSERT INTO marks (id) VALUES (1)").Error; err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for name, db := range storetest.Databases(t, migrate) {
		var n int64
		if err := db.Table("marks").Count(&n).Error; err != nil || n != 0 {
			t.Errorf("%s: second database has %d marks (%v), want a fresh one", name, n, err)
		}
	}
}

func TestMigrateTwice(t *testing.T) {
	create := func(ctx context.Context, db *gorm.DB) error {
		return db.WithContext(ctx).Exec("CREATE TABLE IF NOT EXISTS marks (id INTEGER PRIMARY KEY)").Error
	}
	var seen []string
	storetest.MigrateTwice(t, create, []string{"marks"}, func(dialect string, first map[string]int64) {
		seen = append(seen, dialect)
		if first["marks"] != 0 {
			t.Errorf("%s: %d marks", dialect, first["marks"])
		}
	})
	if slices.Sort(seen); !slices.Equal(seen, []string{database.Postgres, database.SQLite}) {
		t.Fatalf("check ran for %v", seen)
	}

	// A migration that seeds again on every run is caught.
	seeds := func(ctx context.Context, db *gorm.DB) error {
		if err := create(ctx, db); err != nil {
			return err
		}
		return db.WithContext(ctx).Exec("INSERT INTO marks (id) VALUES ((SELECT COUNT(*) + 1 FROM marks))").Error
	}
	failed := testenv.Failure(t, func(tb testing.TB) {
		storetest.MigrateTwice(tb, seeds, []string{"marks"}, func(string, map[string]int64) {})
	})
	if !strings.Contains(failed, "marks: 2 rows after the second run, 1 after the first") {
		t.Fatalf("failure = %q", failed)
	}
}
