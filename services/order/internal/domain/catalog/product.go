// Package catalog is the product catalogue the order service sells from.
// It is the only source of prices: an order line is priced here, never by the client.
package catalog

import (
	"context"
	"errors"
	"fmt"
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

// Check reports the first reason ps is no catalogue to price orders from: a
// product without a SKU, a name or a currency, a price not above zero, or a
// SKU twice. These are the products table's own rules (its key and CHECKs,
// migration 0005 for the empty texts), so a catalogue read from the
// database passes. Orders are priced from whatever a repository returns,
// so a copy read from outside the database (a cache) is checked before it
// prices one: a cached price of 0 made free orders, and a SKU listed twice
// was priced at its last copy.
func Check(ps []Product) error {
	seen := make(map[string]bool, len(ps))
	for i, p := range ps {
		switch {
		case p.SKU == "":
			return fmt.Errorf("catalog: product %d has no SKU", i)
		case p.Name == "":
			return fmt.Errorf("catalog: %q has no name", p.SKU)
		case p.PriceCents <= 0:
			return fmt.Errorf("catalog: %q is priced %d cents", p.SKU, p.PriceCents)
		case p.Currency == "":
			return fmt.Errorf("catalog: %q has no currency", p.SKU)
		case seen[p.SKU]:
			return fmt.Errorf("catalog: %q is listed twice", p.SKU)
		}
		seen[p.SKU] = true
	}
	return nil
}
