// Package dbtest opens real databases for the tests of pkg's persistence packages (database, migrate, outbox, dedup).
// PostgreSQL comes from DATABASE_URL (as printed by scripts/deps.sh env); every call gets its own fresh schema so tests
// never see each other's tables. A missing server fails the test with the deps script's hint; it never skips.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
)

const defaultPostgres = "postgres://shanhai@127.0.0.1:15432/shanhai?sslmode=disable"

// PostgresURL returns a URL whose connections use a fresh schema (dropped at cleanup).
func PostgresURL(t testing.TB) string {
	t.Helper()
	base := os.Getenv("DATABASE_URL")
	if base == "" || !strings.HasPrefix(base, "postgres") {
		base = defaultPostgres
	}
	admin, err := database.Open(base)
	if err != nil {
		t.Fatalf("postgres at %s: %v (run ./scripts/deps.sh up and eval \"$(./scripts/deps.sh env)\")", base, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	schema := "t_" + randomHex(6)
	if err := admin.WithContext(ctx).Exec("CREATE SCHEMA " + schema).Error; err != nil {
		t.Fatalf("postgres at %s: create schema: %v (run ./scripts/deps.sh up and eval \"$(./scripts/deps.sh env)\")", base, err)
	}
	t.Cleanup(func() {
		admin.Exec("DROP SCHEMA " + schema + " CASCADE")
		if sqlDB, err := admin.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	sep := "?"
	if strings.Contains(base, "?") {
		sep = "&"
	}
	return base + sep + "search_path=" + schema
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
		t.Fatalf("open %s: %v", url, err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
