package adapters_test

import (
	"errors"
	"testing"

	"gorm.io/gorm"
)

// errTaken rolls back a statement the table took.
var errTaken = errors.New("taken")

// TestProductsTableRefusesWhatCheckRefuses: every product catalog.Check
// refuses is a row the products table refuses too, on both dialects, so a
// catalogue read from the database always passes Check (and can be cached).
// The table took an empty SKU, name or currency (TEXT NOT NULL allows ”)
// until migration 0005, and on SQLite a NULL SKU or a price that is no
// integer until 0006.
func TestProductsTableRefusesWhatCheckRefuses(t *testing.T) {
	for dialect, db := range stores(t) {
		t.Run(dialect, func(t *testing.T) {
			for name, stmt := range map[string]string{
				"empty sku":      `INSERT INTO products (sku, name, price_cents, currency) VALUES ('', 'Fan', 500, 'EUR')`,
				"empty name":     `INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', '', 500, 'EUR')`,
				"empty currency": `INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', 'Fan', 500, '')`,
				"zero price":     `INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', 'Fan', 0, 'EUR')`,
				"negative price": `INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', 'Fan', -1, 'EUR')`,
				"sku twice":      `INSERT INTO products (sku, name, price_cents, currency) VALUES ('INK-SET', 'Ink', 500, 'EUR')`,
				"null sku":       `INSERT INTO products (sku, name, price_cents, currency) VALUES (NULL, 'Fan', 500, 'EUR')`,
				"text price":     `INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', 'Fan', 'abc', 'EUR')`,
				"null name":      `INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', NULL, 500, 'EUR')`,
				"currency wiped": `UPDATE products SET currency = '' WHERE sku = 'INK-SET'`,
				"sku wiped":      `UPDATE products SET sku = '' WHERE sku = 'INK-SET'`,
				"name wiped":     `UPDATE products SET name = '' WHERE sku = 'INK-SET'`,
			} {
				// Each case is rolled back: a row one case got in made the
				// next 'FAN' fail on the key instead of its own rule, and
				// went unreported.
				err := db.Transaction(func(tx *gorm.DB) error {
					if err := tx.Exec(stmt).Error; err != nil {
						return err
					}
					return errTaken
				})
				if errors.Is(err, errTaken) {
					t.Errorf("%s: the table took it: %s", name, stmt)
				}
			}
			// A good product is still taken.
			if err := db.Exec(`INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN', 'Paper fan', 500, 'EUR')`).Error; err != nil {
				t.Errorf("a good product refused: %v", err)
			}
		})
	}
}
