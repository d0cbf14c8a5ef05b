// Package app holds the order service's use cases, one per file. Each one
// speaks only to domain types and repository interfaces, so HTTP handlers,
// event consumers and tests drive the same code.
package app

import (
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// Application bundles the use cases for the ports.
type Application struct {
	CreateOrder  CreateOrderHandler
	CancelOrder  CancelOrderHandler
	GetOrder     GetOrderHandler
	ListOrders   ListOrdersHandler
	ListProducts ListProductsHandler
	ApplyPayment ApplyPaymentHandler
	// ExpireOrders is not behind a port: the service's housekeeping runs it.
	ExpireOrders ExpireOrdersHandler
}

// Deps are what the use cases need from the outside world. Clock and NewID
// are injected so tests can pin them.
type Deps struct {
	Orders  order.Repository
	Catalog catalog.Repository
	NewID   func() string
	Now     func() time.Time
	// Render turns a freshly created order into the response body that is
	// stored for idempotent replay. The HTTP port supplies it so that the
	// replayed bytes are exactly what the first client saw.
	Render func(order.Snapshot) ([]byte, error)
	// PendingTimeout is how long an order may stay PENDING before
	// ExpireOrders cancels it (ORDER_PENDING_TIMEOUT); zero expires nothing.
	PendingTimeout time.Duration
}

// New wires the use cases.
func New(d Deps) Application {
	now := d.Now
	if now == nil {
		now = time.Now
	}
	// PostgreSQL keeps microseconds: an answer stamped with the clock's
	// nanoseconds (the created order, a cancel) showed a time no later read
	// of the same order returns.
	d.Now = func() time.Time { return now().Truncate(time.Microsecond) }
	return Application{
		CreateOrder:  CreateOrderHandler{d: d},
		CancelOrder:  CancelOrderHandler{orders: d.Orders, now: d.Now},
		GetOrder:     GetOrderHandler{orders: d.Orders},
		ListOrders:   ListOrdersHandler{orders: d.Orders},
		ListProducts: ListProductsHandler{catalog: d.Catalog},
		ApplyPayment: ApplyPaymentHandler{orders: d.Orders, now: d.Now},
		ExpireOrders: ExpireOrdersHandler{orders: d.Orders, now: d.Now, timeout: d.PendingTimeout},
	}
}
