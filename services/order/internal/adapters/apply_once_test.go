package adapters_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// statements counts what db sends from now on: statements, and how many of
// them ran inside a transaction (which adds a BEGIN and a COMMIT round trip).
func statements(t *testing.T, db *gorm.DB) (count func() (all, inTx int)) {
	t.Helper()
	var all, inTx int
	observe := func(tx *gorm.DB) {
		all++
		if _, ok := tx.Statement.ConnPool.(*sql.Tx); ok {
			inTx++
		}
	}
	cb := db.Callback()
	for _, err := range []error{
		cb.Query().Before("gorm:query").Register("test:count", observe),
		cb.Row().Before("gorm:row").Register("test:count", observe),
		cb.Raw().Before("gorm:raw").Register("test:count", observe),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return func() (int, int) { a, i := all, inTx; all, inTx = 0, 0; return a, i }
}

// A payment result is the order service's busiest write (one per order). On
// PostgreSQL it took a transaction of two statements: BEGIN, lock the order
// and record the event, UPDATE, COMMIT, four round trips. It now reads the
// order and the event's record unlocked, and writes the change and the record
// in one statement that applies only if the order is still the version read:
// two round trips, one for a duplicate.
func TestApplyOnceOnPostgresTakesTwoRoundTrips(t *testing.T) {
	db := stores(t)[database.Postgres]
	ctx := context.Background()
	repo := adapters.NewOrderGorm(db)
	o := newOrder(t, db, "gina", 2)
	if err := repo.Create(ctx, o, order.Replay{UserID: "gina", Key: o.ID(), StatusCode: 201}); err != nil {
		t.Fatal(err)
	}
	count := statements(t, db)
	pay := func(o *order.Order) error {
		o.ApplyPayment(order.PaymentOutcome{PaymentID: "p-gina", Succeeded: true}, now.Add(time.Minute))
		return nil
	}

	applied, err := repo.ApplyOnce(ctx, "order", "e1-"+o.ID(), o.ID(), pay)
	if err != nil || !applied {
		t.Fatalf("first delivery: applied %v, %v", applied, err)
	}
	if all, inTx := count(); all != 2 || inTx != 0 {
		t.Fatalf("ApplyOnce sent %d statements, %d of them in a transaction (BEGIN and COMMIT are two round trips more); want 2 outside one", all, inTx)
	}
	got, err := repo.Get(ctx, "gina", o.ID())
	if err != nil || got.Status() != order.Paid || got.PaymentID() != "p-gina" || !got.UpdatedAt().Equal(now.Add(time.Minute)) {
		t.Fatalf("order after the result = %+v, %v", got.Snapshot(), err)
	}

	count()
	called := false
	applied, err = repo.ApplyOnce(ctx, "order", "e1-"+o.ID(), o.ID(), func(*order.Order) error { called = true; return nil })
	if err != nil || applied || called {
		t.Fatalf("duplicate: applied %v, fn called %v, %v", applied, called, err)
	}
	if all, inTx := count(); all != 1 || inTx != 0 {
		t.Fatalf("a duplicate sent %d statements, %d in a transaction; want 1 outside one", all, inTx)
	}
}

// The write applies only to the version of the order that fn saw. When the
// order changes between the read and the write (here fn's first call cancels
// it through another connection), nothing of that first call is stored: fn
// runs again on the order as it now is, under its row lock, and the event is
// recorded once.
func TestApplyOnceAppliesToTheOrderAsItIsWhenItChangedMeanwhile(t *testing.T) {
	db := stores(t)[database.Postgres]
	ctx := context.Background()
	repo := adapters.NewOrderGorm(db)
	o := newOrder(t, db, "hugo", 1)
	if err := repo.Create(ctx, o, order.Replay{UserID: "hugo", Key: o.ID(), StatusCode: 201}); err != nil {
		t.Fatal(err)
	}
	var seen []order.Status
	event := "e-" + o.ID()
	applied, err := repo.ApplyOnce(ctx, "order", event, o.ID(), func(cur *order.Order) error {
		seen = append(seen, cur.Status())
		if len(seen) == 1 {
			// A bound, so that an implementation holding the row's lock
			// while fn runs fails here instead of waiting for itself.
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if _, err := repo.Update(cctx, "hugo", o.ID(), func(o *order.Order) error { return o.Cancel(now) }); err != nil {
				return err
			}
		}
		cur.ApplyPayment(order.PaymentOutcome{PaymentID: "p-hugo", Succeeded: true}, now.Add(time.Minute))
		return nil
	})
	if err != nil || !applied {
		t.Fatalf("applied %v, %v", applied, err)
	}
	if len(seen) != 2 || seen[0] != order.Pending || seen[1] != order.Cancelled {
		t.Fatalf("fn saw %v, want [PENDING CANCELLED]: once as read, once as the cancel left it", seen)
	}
	got, err := repo.Get(ctx, "hugo", o.ID())
	if err != nil || got.Status() != order.Cancelled || got.PaymentID() != "" {
		t.Fatalf("order = %+v, %v; want CANCELLED without the payment", got.Snapshot(), err)
	}
	var n int64
	if err := db.Table("processed_events").Where("event_id = ?", event).Count(&n).Error; err != nil || n != 1 {
		t.Fatalf("event recorded %d times, %v", n, err)
	}
	applied, err = repo.ApplyOnce(ctx, "order", event, o.ID(), func(*order.Order) error { return nil })
	if err != nil || applied {
		t.Fatalf("redelivery: applied %v, %v", applied, err)
	}
}

// A change that changes nothing leaves the order's row alone: a repeated
// cancel, and a result for a CANCELLED order that took the locking path (as
// the two-round-trip path already did). Rewriting the row with its own values
// is a dead tuple and a new row version, and each payment result that read
// the order before it then falls back to the locking transaction.
func TestANoOpChangeWritesNoNewRowVersion(t *testing.T) {
	db := stores(t)[database.Postgres]
	ctx := context.Background()
	repo := adapters.NewOrderGorm(db)
	o := newOrder(t, db, "kim", 1)
	if err := repo.Create(ctx, o, order.Replay{UserID: "kim", Key: o.ID(), StatusCode: 201}); err != nil {
		t.Fatal(err)
	}
	version := func() string {
		t.Helper()
		var v string
		if err := db.Raw("SELECT CAST(xmin AS text) FROM orders WHERE id = ?", o.ID()).Scan(&v).Error; err != nil {
			t.Fatal(err)
		}
		return v
	}
	cancel := func(o *order.Order) error { return o.Cancel(now) }
	var cancelled string
	calls := 0
	applied, err := repo.ApplyOnce(ctx, "order", "e-"+o.ID(), o.ID(), func(cur *order.Order) error {
		if calls++; calls == 1 {
			// The cancel lands between the read and the write: the result
			// is applied again under the lock, to a CANCELLED order.
			cctx, stop := context.WithTimeout(ctx, 5*time.Second)
			defer stop()
			if _, err := repo.Update(cctx, "kim", o.ID(), cancel); err != nil {
				return err
			}
			cancelled = version()
		}
		cur.ApplyPayment(order.PaymentOutcome{PaymentID: "p-kim", Succeeded: true}, now.Add(time.Minute))
		return nil
	})
	if err != nil || !applied || calls != 2 {
		t.Fatalf("applied %v, fn called %d times, %v; want applied by the locking path", applied, calls, err)
	}
	if v := version(); v != cancelled {
		t.Errorf("the result for the CANCELLED order rewrote its row (version %s after the cancel, %s after the result)", cancelled, v)
	}
	if _, err := repo.Update(ctx, "kim", o.ID(), cancel); err != nil {
		t.Fatal(err)
	}
	if v := version(); v != cancelled {
		t.Errorf("a repeated cancel rewrote the row (version %s after the cancel, %s after the repeat)", cancelled, v)
	}
	if rows := storetest.OutboxRows(t, db, o.ID()); len(rows) != 2 {
		t.Errorf("outbox = %+v, want order.created and one order.cancelled", rows)
	}
}

// Events fn records are stored with its change, in the same statement, and
// only when it applies.
func TestApplyOnceStoresTheEventsOfTheChange(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			repo := adapters.NewOrderGorm(db)
			o := newOrder(t, db, "jack", 1)
			if err := repo.Create(ctx, o, order.Replay{UserID: "jack", Key: o.ID(), StatusCode: 201}); err != nil {
				t.Fatal(err)
			}
			cancel := func(o *order.Order) error { return o.Cancel(now) }
			for range 2 {
				if _, err := repo.ApplyOnce(ctx, "order", "e-"+o.ID(), o.ID(), cancel); err != nil {
					t.Fatal(err)
				}
			}
			rows := storetest.OutboxRows(t, db, o.ID())
			if len(rows) != 2 || rows[1].EventType != "order.cancelled" {
				t.Fatalf("outbox = %+v, want order.created and one order.cancelled", rows)
			}
			if got, err := repo.Get(ctx, "jack", o.ID()); err != nil || got.Status() != order.Cancelled {
				t.Fatalf("order = %v, %v", got, err)
			}
		})
	}
}

// fn's error stores nothing: neither its change nor the event's record, so a
// redelivery is handled again.
func TestApplyOnceStoresNothingWhenFnFails(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			repo := adapters.NewOrderGorm(db)
			o := newOrder(t, db, "ivy", 1)
			if err := repo.Create(ctx, o, order.Replay{UserID: "ivy", Key: o.ID(), StatusCode: 201}); err != nil {
				t.Fatal(err)
			}
			_, err := repo.ApplyOnce(ctx, "order", "e-"+o.ID(), o.ID(), func(cur *order.Order) error {
				cur.ApplyPayment(order.PaymentOutcome{PaymentID: "p-ivy", Succeeded: true}, now)
				return order.ErrResultMismatch
			})
			if err == nil {
				t.Fatal("fn's error was not returned")
			}
			got, err := repo.Get(ctx, "ivy", o.ID())
			if err != nil || got.Status() != order.Pending {
				t.Fatalf("order = %v, %v; want it PENDING", got, err)
			}
			applied, err := repo.ApplyOnce(ctx, "order", "e-"+o.ID(), o.ID(), func(*order.Order) error { return nil })
			if err != nil || !applied {
				t.Fatalf("redelivery after the failure: applied %v, %v; want it handled", applied, err)
			}
		})
	}
}

// BenchmarkApplyOnce applies one payment result to each of b.N fresh orders
// on PostgreSQL, as the consumer does once per order. Creating the orders is
// not timed. Compare revisions side by side (the database is shared):
//
//	go test -run '^$' -bench ApplyOnce -count 5 ./internal/adapters/
func BenchmarkApplyOnce(b *testing.B) {
	db := storetest.Databases(b, service.Migrate)[database.Postgres]
	ctx := context.Background()
	repo := adapters.NewOrderGorm(db)
	ps, err := adapters.NewCatalogGorm(db).All(ctx)
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]string, b.N)
	for i := range ids {
		o, err := order.New(uuid.Must(uuid.NewV7()).String(), "bench", []order.Requested{{SKU: "TEA-GREEN-100G", Quantity: 1}}, catalog.Index(ps), now)
		if err != nil {
			b.Fatal(err)
		}
		if err := repo.Create(ctx, o, order.Replay{UserID: "bench", Key: o.ID(), StatusCode: 201}); err != nil {
			b.Fatal(err)
		}
		ids[i] = o.ID()
	}
	b.ResetTimer()
	for i := range b.N {
		_, err := repo.ApplyOnce(ctx, "order", "e-"+ids[i], ids[i], func(o *order.Order) error {
			o.ApplyPayment(order.PaymentOutcome{PaymentID: "p-" + ids[i], Succeeded: true}, now)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
