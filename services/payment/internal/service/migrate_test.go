package service_test

import (
	"context"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

func TestMigrationsFromEmptyAndTwice(t *testing.T) {
	for name, url := range svctest.DatabaseURLs(t) {
		t.Run(name, func(t *testing.T) {
			db, err := database.Open(url)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { s, _ := db.DB(); s.Close() }()
			ctx := context.Background()
			counts := func() map[string]int64 {
				m := map[string]int64{}
				for _, tbl := range []string{"payments", "dead_letters", "outbox",
					"schema_migrations", "schema_migrations_outbox"} {
					var n int64
					if err := db.Table(tbl).Count(&n).Error; err != nil {
						t.Fatalf("table %s: %v", tbl, err)
					}
					m[tbl] = n
				}
				return m
			}
			if err := service.Migrate(ctx, db); err != nil {
				t.Fatalf("first: %v", err)
			}
			first := counts()
			if first["schema_migrations"] == 0 {
				t.Fatal("no versions recorded")
			}
			if err := service.Migrate(ctx, db); err != nil {
				t.Fatalf("second: %v", err)
			}
			second := counts()
			for k, v := range first {
				if second[k] != v {
					t.Errorf("%s: %d rows after the second run, %d after the first", k, second[k], v)
				}
			}
		})
	}
}
