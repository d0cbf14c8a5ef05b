package svctest

import (
	"context"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// DatabaseURLs returns, by dialect (database.Postgres, database.SQLite), the URL of a fresh empty database on each
// dialect the services support: a new database on the PostgreSQL test server and an SQLite file in the test's
// temporary directory. It is pkg/internal/dbtest made reachable from the services' modules.
func DatabaseURLs(t testing.TB) map[string]string {
	t.Helper()
	return map[string]string{database.Postgres: dbtest.PostgresURL(t), database.SQLite: dbtest.SQLiteURL(t)}
}

// Databases opens a fresh database on each dialect and runs migrate on it, so store tests run against the schema the
// service would create; the pools are closed when the test ends.
func Databases(t testing.TB, migrate func(context.Context, *gorm.DB) error) map[string]*gorm.DB {
	t.Helper()
	out := map[string]*gorm.DB{database.Postgres: dbtest.Postgres(t), database.SQLite: dbtest.SQLite(t)}
	for name, db := range out {
		if err := migrate(context.Background(), db); err != nil {
			t.Fatalf("%s: migrate: %v", name, err)
		}
	}
	return out
}

// OutboxRows returns the outbox messages written with key, oldest first.
func OutboxRows(t testing.TB, db *gorm.DB, key string) []outbox.Message {
	t.Helper()
	var rows []outbox.Message
	if err := db.Where("key = ?", key).Order("id").Find(&rows).Error; err != nil {
		t.Fatalf("svctest: outbox rows of %s: %v", key, err)
	}
	return rows
}
