package adapters_test

import (
	"context"
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/migrations"
)

// stores runs fn once on a fresh, migrated PostgreSQL database (the real
// server from scripts/deps.sh, through pkg/testenv) and once on a fresh
// SQLite file: every repository test proves both dialects.
func stores(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	t.Run("postgres", func(t *testing.T) {
		fn(t, openMigrated(t, testenv.Postgres(t)))
	})
	t.Run("sqlite", func(t *testing.T) {
		fn(t, openMigrated(t, "sqlite://"+filepath.Join(t.TempDir(), "user.db")))
	})
}

func openMigrated(t *testing.T, url string) *gorm.DB {
	t.Helper()
	db, err := database.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	if err := migrateAll(t.Context(), db); err != nil {
		t.Fatal(err)
	}
	return db
}

func migrateAll(ctx context.Context, db *gorm.DB) error {
	if err := migrate.Up(ctx, db, outbox.Migrations); err != nil {
		return err
	}
	return migrate.Up(ctx, db, migrations.FS)
}
