package adapters_test

import (
	"context"
	"fmt"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/migrations"
)

// TestCatalogueMigrationIsNotHiddenByTheCache is a release whose migration
// changes the catalogue (a price, a new product) starting beside a Redis
// that still holds the last release's catalogue: the new instance must sell
// from the migrated catalogue at once, not from the old one for the rest of
// CATALOG_CACHE_TTL (5 minutes by default).
func TestCatalogueMigrationIsNotHiddenByTheCache(t *testing.T) {
	ctx := context.Background()
	rdb := testRedis(t)
	base := "test:order:catalog:" + uuid.NewString()

	reprice := []byte(`-- +goose Up
UPDATE products SET price_cents = 3900 WHERE sku = 'INK-SET';
INSERT INTO products (sku, name, price_cents, currency) VALUES ('BRUSH-WOLF', 'Wolf hair brush', 2100, 'EUR');
-- +goose Down
DELETE FROM products WHERE sku = 'BRUSH-WOLF';
UPDATE products SET price_cents = 3500 WHERE sku = 'INK-SET';
`)
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	// The next release's migration takes the version after the newest.
	var newest int
	if _, err := fmt.Sscanf(files[len(files)-1], "%d_", &newest); err != nil {
		t.Fatal(err)
	}
	next := fstest.MapFS{fmt.Sprintf("%04d_reprice.sql", newest+1): {Data: reprice}}
	for _, f := range files {
		b, err := fs.ReadFile(migrations.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		next[f] = &fstest.MapFile{Data: b}
	}

	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			key := func(set fs.FS) string {
				t.Helper()
				k, err := adapters.CatalogKeyFor(base+":"+name, set)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { rdb.Del(context.Background(), k) })
				return k
			}
			running := adapters.NewCatalogRedis(adapters.NewCatalogGorm(db), rdb, time.Minute, nil).WithKey(key(migrations.FS))
			if _, err := running.All(ctx); err != nil {
				t.Fatal(err)
			}
			// The next release migrates, then serves.
			if err := migrate.Up(ctx, db, next); err != nil {
				t.Fatal(err)
			}
			started := adapters.NewCatalogRedis(adapters.NewCatalogGorm(db), rdb, time.Minute, nil).WithKey(key(next))
			ps, err := started.All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			idx := catalog.Index(ps)
			if idx["INK-SET"].PriceCents != 3900 || idx["BRUSH-WOLF"].SKU == "" {
				t.Fatalf("after the catalogue migration the new instance sells INK-SET at %d cents and BRUSH-WOLF %t (want 3900, true)",
					idx["INK-SET"].PriceCents, idx["BRUSH-WOLF"].SKU != "")
			}
		})
	}
}
