package adapters_test

import (
	"context"
	"path/filepath"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// stores opens a fresh, migrated database on each supported dialect.
func stores(t *testing.T) map[string]*gorm.DB {
	t.Helper()
	out := map[string]*gorm.DB{}
	for name, url := range map[string]string{
		"postgres": testenv.Postgres(t),
		"sqlite":   "sqlite://" + filepath.Join(t.TempDir(), "payment.db"),
	} {
		db, err := database.Open(url)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() {
			if sqlDB, err := db.DB(); err == nil {
				_ = sqlDB.Close()
			}
		})
		if err := service.Migrate(context.Background(), db); err != nil {
			t.Fatalf("%s: migrate: %v", name, err)
		}
		out[name] = db
	}
	return out
}
