package adapters_test

import (
	"context"
	"log/slog"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/user/migrations"
)

// stores runs fn once on a fresh, migrated PostgreSQL database (the real
// server from scripts/deps.sh, through pkg/testenv) and once on a fresh
// SQLite file: every repository test proves both dialects.
func stores(t *testing.T, fn func(t *testing.T, db *gorm.DB)) {
	for name, db := range storetest.Databases(t, migrateAll) {
		t.Run(name, func(t *testing.T) { fn(t, db) })
	}
}

func migrateAll(ctx context.Context, db *gorm.DB) error {
	return migrate.UpAll(ctx, db, outbox.Migrations, migrations.Set(slog.New(slog.DiscardHandler)))
}
