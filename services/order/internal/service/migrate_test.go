package service_test

import (
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

func TestMigrationsFromEmptyAndTwice(t *testing.T) {
	tables := []string{"products", "orders", "order_items", "idempotency_keys", "outbox", "processed_events",
		"schema_migrations", "schema_migrations_outbox", "schema_migrations_dedup"}
	storetest.MigrateTwice(t, service.Migrate, tables, func(dialect string, first map[string]int64) {
		if first["products"] != 8 {
			t.Fatalf("%s: seeded products = %d", dialect, first["products"])
		}
	})
}
