// Package catalog is the product catalogue the order service sells from.
// It is the only source of prices: an order line is priced here, never by the client.
package catalog

import (
	"context"
	"errors"
)

// Product is one sellable item. Prices are integer minor units so that
// totals never pick up floating-point error.
type Product struct {
	SKU        string
	Name       string
	PriceCents int64
	Currency   string
}

// Repository reads the catalogue. The catalogue is small and seeded by a
// migration, so All is the only read the service needs; a cache may wrap it.
type Repository interface {
	All(ctx context.Context) ([]Product, error)
}

// ErrEmpty is returned when the catalogue has no products, which means the
// seed migration did not run.
var ErrEmpty = errors.New("catalog: no products")

// Index maps SKU to product for pricing lookups.
func Index(ps []Product) map[string]Product {
	m := make(map[string]Product, len(ps))
	for _, p := range ps {
		m[p.SKU] = p
	}
	return m
}
