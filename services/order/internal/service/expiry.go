package service

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/shanhai-dev/shanhai/services/order/internal/app"
)

// expiry is the housekeeping's minute round that ends the saga of the
// orders payment never answered (app.ExpireOrdersHandler): payment sends
// no payment.failed when it gives up on an order.created, so without it
// those orders stayed PENDING for good. It runs every minute, apart from
// the hourly round that forgets keys and dedup records: an order is then
// cancelled within a minute of its timeout, while those deletes (which
// scan their tables) keep their hour.
type expiry struct {
	expire  app.ExpireOrdersHandler
	timeout time.Duration
	log     *slog.Logger
	// expired counts the orders cancelled, for a dashboard and an alert:
	// each is a customer whose order payment dropped.
	expired metric.Int64Counter
	// failures counts the rounds that failed (not those a stop cut off):
	// the orders past the timeout then stay PENDING, and a WARN line alone
	// is easy to miss when every round fails, e.g. with the database gone.
	failures metric.Int64Counter
}

func newExpiry(h app.ExpireOrdersHandler, timeout time.Duration, log *slog.Logger) *expiry {
	meter := otel.Meter("shanhai/order")
	expired, _ := meter.Int64Counter("shanhai.order.expired",
		metric.WithDescription("orders cancelled because payment had not answered ORDER_PENDING_TIMEOUT after they were placed (cancel_reason payment_timeout)"))
	failures, _ := meter.Int64Counter("shanhai.order.expiry.failures",
		metric.WithDescription("expiry rounds that failed (the orders past ORDER_PENDING_TIMEOUT stay PENDING until a round gets through)"))
	// Both exported at 0 from the start: increase() needs two samples, so
	// a series born at 1 by a process's first expiry or failure would show
	// none.
	expired.Add(context.Background(), 0)
	failures.Add(context.Background(), 0)
	return &expiry{expire: h, timeout: timeout, log: log, expired: expired, failures: failures}
}

// round cancels the orders past the timeout. What it cancelled before a
// failure is counted; a failure is counted and logged, and the next round
// tries again. What a stop cuts off is neither.
func (e *expiry) round(ctx context.Context) {
	n, err := e.expire.Handle(ctx)
	if n > 0 {
		e.expired.Add(ctx, int64(n))
		// WARN: each is an order payment dropped (a dead letter, or its
		// retries given up on), which someone should look into.
		e.log.WarnContext(ctx, "cancelled orders left PENDING past ORDER_PENDING_TIMEOUT",
			"count", n, "pending_timeout", e.timeout.String())
	}
	if err != nil && ctx.Err() == nil {
		e.failures.Add(ctx, 1)
		e.log.WarnContext(ctx, "expire pending orders", "err", err)
	}
}
