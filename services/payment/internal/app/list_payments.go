package app

import (
	"context"
	"fmt"

	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

// Page sizes for listing, as services/order's: small by default, bounded so
// one request cannot read a user's whole history.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

type ListPaymentsHandler struct{ payments payment.Repository }

// Page is one page of a user's payments, newest first; Next is the cursor
// of the next page, "" on the last.
type Page struct {
	Payments []payment.Snapshot
	Next     string
}

// Handle lists a page of the user's own payments, optionally for one order.
// Another user's order id simply yields an empty page.
func (h ListPaymentsHandler) Handle(ctx context.Context, userID string, q payment.ListQuery) (Page, error) {
	if q.Limit <= 0 {
		q.Limit = DefaultPageSize
	}
	q.Limit = min(q.Limit, MaxPageSize)
	// As GetPayment: a user id no payment can have lists nothing, without
	// a query PostgreSQL would refuse.
	if !payment.PossibleUserID(userID) {
		return Page{Payments: []payment.Snapshot{}}, nil
	}
	ps, next, err := h.payments.List(ctx, userID, q)
	if err != nil {
		return Page{}, fmt.Errorf("list payments: %w", err)
	}
	p := Page{Payments: make([]payment.Snapshot, len(ps)), Next: next}
	for i, s := range ps {
		p.Payments[i] = s.Snapshot()
	}
	return p, nil
}
