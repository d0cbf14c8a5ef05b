package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
)

type ListProductsHandler struct{ catalog catalog.Repository }

func (h ListProductsHandler) Handle(ctx context.Context) ([]catalog.Product, error) {
	ps, err := h.catalog.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return ps, nil
}
