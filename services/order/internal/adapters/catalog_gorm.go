package adapters

import (
	"context"
	"fmt"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
)

type productRow struct {
	SKU        string `gorm:"column:sku;primaryKey"`
	Name       string
	PriceCents int64
	Currency   string
}

func (productRow) TableName() string { return "products" }

// CatalogGorm reads the seeded products table.
type CatalogGorm struct{ db *gorm.DB }

func NewCatalogGorm(db *gorm.DB) *CatalogGorm { return &CatalogGorm{db: db} }

func (c *CatalogGorm) All(ctx context.Context) ([]catalog.Product, error) {
	var rows []productRow
	if err := c.db.WithContext(ctx).Order("sku").Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("load products: %w", err)
	}
	if len(rows) == 0 {
		return nil, catalog.ErrEmpty
	}
	out := make([]catalog.Product, len(rows))
	for i, r := range rows {
		out[i] = catalog.Product{SKU: r.SKU, Name: r.Name, PriceCents: r.PriceCents, Currency: r.Currency}
	}
	return out, nil
}
