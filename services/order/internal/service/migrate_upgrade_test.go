package service_test

import (
	"context"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/dedup"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
	"github.com/shanhai-dev/shanhai/services/order/migrations"
)

// TestMigrationsUpgradeADatabaseOfTheRelease0004: a database the release
// before the products CHECKs left (migrations 0001-0004, the catalogue
// seeded, an order placed) starts on this release's set: 0005 and 0006
// rebuild products on SQLite and add its CHECKs on PostgreSQL, and every
// product and order is still there, the catalogue readable. A fresh
// database alone never shows a rebuild meeting rows of another table.
func TestMigrationsUpgradeADatabaseOfTheRelease0004(t *testing.T) {
	ctx := context.Background()
	previous := fstest.MapFS{}
	err := fs.WalkDir(migrations.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".sql") || path >= "0005" {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, path)
		previous[path] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	old := func(ctx context.Context, db *gorm.DB) error {
		return migrate.UpAll(ctx, db, outbox.Migrations, dedup.Migrations, previous)
	}
	for dialect, db := range storetest.Databases(t, old) {
		t.Run(dialect, func(t *testing.T) {
			for _, stmt := range []string{
				`INSERT INTO orders (id, user_id, status, total_cents, currency, created_at, updated_at)
					VALUES ('o1', 'alice', 'PENDING', 3780, 'EUR', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`,
				`INSERT INTO order_items (order_id, line, sku, name, quantity, unit_price_cents)
					VALUES ('o1', 1, 'TEA-GREEN-100G', 'Longjing green tea, 100 g', 2, 1890)`,
			} {
				if err := db.Exec(stmt).Error; err != nil {
					t.Fatal(err)
				}
			}
			if err := service.Migrate(ctx, db); err != nil {
				t.Fatalf("upgrade: %v", err)
			}
			var products, items int64
			if err := db.Table("products").Count(&products).Error; err != nil {
				t.Fatal(err)
			}
			if err := db.Table("order_items").Where("order_id = 'o1'").Count(&items).Error; err != nil {
				t.Fatal(err)
			}
			if products != 8 || items != 1 {
				t.Fatalf("after the upgrade: %d products, %d lines of o1; want 8 and 1", products, items)
			}
			var price int64
			if err := db.Raw(`SELECT price_cents FROM products WHERE sku = 'CAM-1'`).Scan(&price).Error; err != nil || price != 89900 {
				t.Fatalf("CAM-1 after the upgrade: %d, %v", price, err)
			}
			if err := db.Exec(`INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', '', 500, 'EUR')`).Error; err == nil {
				t.Error("the upgraded table took a product without a name")
			}
		})
	}
}
