package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// Page sizes for listing: small by default, bounded so one request cannot
// read a user's whole history.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

type ListOrdersHandler struct{ orders order.Repository }

// Page is one page of a user's orders, newest first.
type Page struct {
	Orders []order.Snapshot
	Next   string
}

func (h ListOrdersHandler) Handle(ctx context.Context, userID string, q order.ListQuery) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultPageSize
	}
	q.Limit = min(q.Limit, MaxPageSize)
	os, next, err := h.orders.List(ctx, userID, q)
	if err != nil {
		return Page{}, fmt.Errorf("list orders: %w", err)
	}
	p := Page{Orders: make([]order.Snapshot, len(os)), Next: next}
	for i, o := range os {
		p.Orders[i] = o.Snapshot()
	}
	return p, nil
}
