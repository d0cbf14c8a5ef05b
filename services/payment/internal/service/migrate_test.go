package service_test

import (
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

func TestMigrationsFromEmptyAndTwice(t *testing.T) {
	tables := []string{"payments", "dead_letters", "outbox", "schema_migrations", "schema_migrations_outbox"}
	storetest.MigrateTwice(t, service.Migrate, tables, func(dialect string, first map[string]int64) {
		if first["schema_migrations"] == 0 {
			t.Fatalf("%s: no versions recorded", dialect)
		}
	})
}
