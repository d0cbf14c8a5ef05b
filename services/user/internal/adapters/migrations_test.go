package adapters_test

import (
	"sort"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
)

// schema lists the tables, columns and indexes a database has, so two runs
// can be compared.
func schema(t *testing.T, db *gorm.DB) []string {
	t.Helper()
	var out []string
	switch database.Dialect(db) {
	case database.Postgres:
		if err := db.Raw(`SELECT table_name || '.' || column_name || ':' || data_type FROM information_schema.columns
			WHERE table_schema = current_schema() UNION ALL
			SELECT 'index ' || indexname FROM pg_indexes WHERE schemaname = current_schema()`).Scan(&out).Error; err != nil {
			t.Fatal(err)
		}
	default:
		if err := db.Raw(`SELECT type || ' ' || name || ' ' || COALESCE(sql, '') FROM sqlite_master`).Scan(&out).Error; err != nil {
			t.Fatal(err)
		}
	}
	sort.Strings(out)
	return out
}

// Migrations apply on an empty database of either dialect, and applying
// them again changes nothing.
func TestMigrationsFromEmptyAndTwice(t *testing.T) {
	for name, url := range storetest.URLs(t) {
		t.Run(name, func(t *testing.T) {
			db, err := database.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { sqlDB, _ := db.DB(); _ = sqlDB.Close() }()
			if empty := schema(t, db); len(empty) != 0 {
				t.Fatalf("database not empty: %v", empty)
			}
			if err := migrateAll(t.Context(), db); err != nil {
				t.Fatalf("first run: %v", err)
			}
			first := schema(t, db)
			for _, want := range []string{"users", "refresh_tokens", "outbox"} {
				if !db.Migrator().HasTable(want) {
					t.Fatalf("no table %s after migrating", want)
				}
			}
			if err := migrateAll(t.Context(), db); err != nil {
				t.Fatalf("second run: %v", err)
			}
			second := schema(t, db)
			if len(first) != len(second) {
				t.Fatalf("schema changed on the second run:\n%v\n%v", first, second)
			}
			for i := range first {
				if first[i] != second[i] {
					t.Fatalf("schema changed on the second run: %q vs %q", first[i], second[i])
				}
			}
		})
	}
}
