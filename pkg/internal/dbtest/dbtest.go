// Package dbtest opens real databases for the tests of pkg's persistence packages (database, migrate, outbox, dedup)
// and, through testenv/storetest, of the services' stores.
// PostgreSQL comes from pkg/testenv (a fresh database per call, so tests never see each other's tables); SQLite is a
// file in the test's temporary directory. A missing server fails the test with the deps script's hint; it never skips.
package dbtest

import (
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/redact"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// PostgresURL returns the URL of a fresh PostgreSQL database (testenv.Postgres: created for this test, dropped after).
func PostgresURL(t testing.TB) string {
	t.Helper()
	return testenv.Postgres(t)
}

// Postgres opens PostgresURL with database.Open and closes it at cleanup.
func Postgres(t testing.TB) *gorm.DB { t.Helper(); return open(t, PostgresURL(t)) }

// SQLiteURL returns a sqlite:// URL of a file in a temporary directory.
func SQLiteURL(t testing.TB) string {
	t.Helper()
	return "sqlite://" + filepath.Join(t.TempDir(), "test.db")
}

// SQLite opens a fresh SQLite file database.
func SQLite(t testing.TB) *gorm.DB { t.Helper(); return open(t, SQLiteURL(t)) }

// Each runs fn once per dialect, as subtests named "postgres" and "sqlite", with a fresh database.
func Each(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	t.Run(database.Postgres, func(t *testing.T) { fn(t, Postgres(t)) })
	t.Run(database.SQLite, func(t *testing.T) { fn(t, SQLite(t)) })
}

func open(t testing.TB, url string) *gorm.DB {
	t.Helper()
	db, err := database.Open(url)
	if err != nil {
		// CI logs keep the message: the URL without its password.
		t.Fatalf("open %s: %v", redact.URL(url), err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}
