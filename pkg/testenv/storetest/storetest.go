// Package storetest gives a service's store tests a fresh database on each dialect the services support (PostgreSQL
// on the test server, an SQLite file), migrated by the service's own migrations. It is pkg/internal/dbtest made
// reachable from the services' modules, apart from svctest so a store test links no NATS, Kafka or etcd client.
package storetest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// URLs returns, by dialect (database.Postgres, database.SQLite), the URL of a fresh empty database on each
// dialect the services support: a new database on the PostgreSQL test server and an SQLite file in the test's
// temporary directory.
func URLs(t testing.TB) map[string]string {
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
		t.Fatalf("storetest: outbox rows of %s: %v", key, err)
	}
	return rows
}

// MigrateTwice runs migrate on a fresh database of each dialect, hands the row counts of tables after that first run
// to check (for what the service seeds or records), runs migrate again and fails unless the second run succeeds and
// leaves every count as it was: a service runs its migrations on every start, so they must be idempotent.
func MigrateTwice(t testing.TB, migrate func(context.Context, *gorm.DB) error, tables []string, check func(dialect string, first map[string]int64)) {
	t.Helper()
	ctx := context.Background()
	for name, url := range URLs(t) {
		db, err := database.Open(url)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() { _ = database.Close(db) })
		counts := func() map[string]int64 {
			t.Helper()
			m := map[string]int64{}
			for _, tbl := range tables {
				var n int64
				if err := db.Table(tbl).Count(&n).Error; err != nil {
					t.Fatalf("%s: table %s: %v", name, tbl, err)
				}
				m[tbl] = n
			}
			return m
		}
		if err := migrate(ctx, db); err != nil {
			t.Fatalf("%s: first: %v", name, err)
		}
		first := counts()
		check(name, first)
		if err := migrate(ctx, db); err != nil {
			t.Fatalf("%s: second: %v", name, err)
		}
		var changed []string
		for tbl, n := range counts() {
			if n != first[tbl] {
				changed = append(changed, fmt.Sprintf("%s: %d rows after the second run, %d after the first", tbl, n, first[tbl]))
			}
		}
		if len(changed) > 0 {
			slices.Sort(changed)
			t.Fatalf("%s: %s", name, strings.Join(changed, "; "))
		}
	}
}
