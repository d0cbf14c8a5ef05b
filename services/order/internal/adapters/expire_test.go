package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// placed stores a PENDING order of user's placed at the given time.
func placed(t *testing.T, db *gorm.DB, user string, at time.Time) *order.Order {
	t.Helper()
	ps, err := adapters.NewCatalogGorm(db).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o, err := order.New(uuid.Must(uuid.NewV7()).String(), user, []order.Requested{{SKU: "TEA-GREEN-100G", Quantity: 1}}, catalog.Index(ps), at)
	if err != nil {
		t.Fatal(err)
	}
	if err := adapters.NewOrderGorm(db).Create(context.Background(), o, order.Replay{UserID: user, Key: o.ID(), StatusCode: 201}); err != nil {
		t.Fatal(err)
	}
	return o
}

// expire is the expiry the app runs: Expire on each order ExpirePending
// hands over, with the cutoff it was asked for.
func expire(ctx context.Context, repo *adapters.OrderGorm, cutoff, at time.Time, limit int) (int, error) {
	return repo.ExpirePending(ctx, cutoff, limit, func(o *order.Order) error {
		o.Expire(cutoff, at)
		return nil
	})
}

// stored reads an order back as the user sees it.
func stored(t *testing.T, repo *adapters.OrderGorm, o *order.Order) order.Snapshot {
	t.Helper()
	got, err := repo.Get(context.Background(), o.UserID(), o.ID())
	if err != nil {
		t.Fatal(err)
	}
	return got.Snapshot()
}

// eventTypes lists the outbox rows of an order by type.
func eventTypes(t *testing.T, db *gorm.DB, id string) []string {
	t.Helper()
	var out []string
	for _, m := range storetest.OutboxRows(t, db, id) {
		out = append(out, m.EventType)
	}
	return out
}

// An order left PENDING since before the cutoff is cancelled with reason
// payment_timeout and its order.cancelled in the outbox, in the same
// transaction; one placed after the cutoff, or one that was paid, is left
// alone, and a second round finds nothing. The limit bounds a round's
// transaction, oldest first.
func TestExpirePendingCancelsOnlyWhatIsPastTheCutoff(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			repo := adapters.NewOrderGorm(db)
			cutoff := now.Add(-10 * time.Minute)
			oldest := placed(t, db, "ivy", cutoff.Add(-time.Hour))
			old := placed(t, db, "ivy", cutoff.Add(-time.Second))
			young := placed(t, db, "ivy", cutoff.Add(time.Second))
			atCutoff := placed(t, db, "ivy", cutoff)
			paid := placed(t, db, "ivy", cutoff.Add(-time.Hour))
			if applied, err := repo.ApplyOnce(ctx, "order", "e-"+paid.ID(), paid.ID(), func(o *order.Order) error {
				o.ApplyPayment(order.PaymentOutcome{PaymentID: "p-ivy", Succeeded: true}, now)
				return nil
			}); err != nil || !applied {
				t.Fatalf("pay: %v, %v", applied, err)
			}

			if n, err := expire(ctx, repo, cutoff, now, 1); err != nil || n != 1 {
				t.Fatalf("round of 1: %d, %v", n, err)
			}
			if s := stored(t, repo, oldest); s.Status != order.Cancelled || s.CancelReason != order.PaymentTimeout || !s.UpdatedAt.Equal(now) {
				t.Fatalf("oldest after a round of 1: %+v", s)
			}
			if s := stored(t, repo, old); s.Status != order.Pending {
				t.Fatalf("a round of 1 took a second order: %+v", s)
			}
			if n, err := expire(ctx, repo, cutoff, now, 100); err != nil || n != 1 {
				t.Fatalf("second round: %d, %v; want the one left", n, err)
			}
			for _, o := range []*order.Order{oldest, old} {
				s := stored(t, repo, o)
				if s.Status != order.Cancelled || s.CancelReason != order.PaymentTimeout || len(s.Lines) != 1 {
					t.Errorf("expired order = %+v", s)
				}
				if got := eventTypes(t, db, o.ID()); fmt.Sprint(got) != "[order.created order.cancelled]" {
					t.Errorf("outbox of an expired order: %v", got)
				}
			}
			for o, want := range map[*order.Order]order.Status{young: order.Pending, atCutoff: order.Pending, paid: order.Paid} {
				if s := stored(t, repo, o); s.Status != want || s.CancelReason != "" {
					t.Errorf("order created %v: %s %q, want %s", o.CreatedAt(), s.Status, s.CancelReason, want)
				}
				if got := eventTypes(t, db, o.ID()); fmt.Sprint(got) != "[order.created]" {
					t.Errorf("outbox of an order left alone: %v", got)
				}
			}
			if n, err := expire(ctx, repo, cutoff, now, 100); err != nil || n != 0 {
				t.Fatalf("third round: %d, %v; want nothing", n, err)
			}
			// A user's cancel of an expired order changes nothing and says why it was cancelled.
			got, err := repo.Update(ctx, "ivy", old.ID(), func(o *order.Order) error { return o.Cancel(now) })
			if err != nil || got.CancelReason() != order.PaymentTimeout || len(eventTypes(t, db, old.ID())) != 2 {
				t.Fatalf("user's cancel of an expired order: %v, %v", got, err)
			}
			// And a user's cancel is stored as one.
			if _, err := repo.Update(ctx, "ivy", young.ID(), func(o *order.Order) error { return o.Cancel(now) }); err != nil {
				t.Fatal(err)
			}
			if s := stored(t, repo, young); s.CancelReason != order.CancelledByUser {
				t.Fatalf("user's cancel stored as %q", s.CancelReason)
			}
		})
	}
}

// fn failing stores nothing of the round.
func TestExpirePendingStoresNothingWhenFnFails(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			repo := adapters.NewOrderGorm(db)
			a, b := placed(t, db, "jay", now.Add(-time.Hour)), placed(t, db, "jay", now.Add(-time.Hour))
			boom := errors.New("boom")
			calls := 0
			_, err := repo.ExpirePending(context.Background(), now, 10, func(o *order.Order) error {
				if calls++; calls == 2 {
					return boom
				}
				o.Expire(now, now)
				return nil
			})
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v, want fn's", err)
			}
			for _, o := range []*order.Order{a, b} {
				if s := stored(t, repo, o); s.Status != order.Pending || len(eventTypes(t, db, o.ID())) != 1 {
					t.Fatalf("order after a failed round: %+v", s)
				}
			}
		})
	}
}

// waitForLockWait polls until a session of db's database waits for a row
// lock, or fails the test after a bound.
func waitForLockWait(t *testing.T, db *gorm.DB) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var n int
		if err := db.Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n).Error; err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
	}
	t.Fatal("no session waited for a lock")
}

// A payment result being applied under the order's row lock (ApplyOnce's
// locking path) is not waited for: the expiry skips that order and returns
// at once, the result stores PAID, and later rounds leave the paid order
// alone. Waiting would hold the expiry's whole batch on one order.
func TestExpirySkipsAnOrderWhosePaymentResultIsBeingApplied(t *testing.T) {
	db := stores(t)[database.Postgres]
	repo := adapters.NewOrderGorm(db)
	held := placed(t, db, "kim", now.Add(-time.Hour))
	free := placed(t, db, "kim", now.Add(-time.Hour))
	tx := db.Begin()
	t.Cleanup(func() { tx.Rollback() })
	var status string
	if err := tx.Raw(`SELECT status FROM orders WHERE id = ? FOR UPDATE`, held.ID()).Scan(&status).Error; err != nil || status != "PENDING" {
		t.Fatalf("lock: %q, %v", status, err)
	}
	// A bound, so that an expiry waiting for the lock fails here instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := expire(ctx, repo, now, now, 100); err != nil || n != 1 {
		t.Fatalf("expiry beside a held order: %d, %v; want the free one only", n, err)
	}
	if err := tx.Exec(`UPDATE orders SET status = 'PAID', payment_id = 'p-kim' WHERE id = ?`, held.ID()).Error; err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit().Error; err != nil {
		t.Fatal(err)
	}
	if n, err := expire(context.Background(), repo, now, now, 100); err != nil || n != 0 {
		t.Fatalf("round after the result: %d, %v", n, err)
	}
	if s := stored(t, repo, held); s.Status != order.Paid || len(eventTypes(t, db, held.ID())) != 1 {
		t.Fatalf("held order = %+v, events %v", s, eventTypes(t, db, held.ID()))
	}
	if s := stored(t, repo, free); s.Status != order.Cancelled {
		t.Fatalf("free order = %+v", s)
	}
}

// A payment.succeeded applied while the expiry holds the order waits for it,
// then finds the order CANCELLED: it is recorded, the order stays CANCELLED
// with no payment id, and only the expiry's order.cancelled is in the
// outbox (payment refunds the charge on it).
func TestPaymentResultMeetingTheExpiryLeavesTheOrderCancelled(t *testing.T) {
	db := stores(t)[database.Postgres]
	ctx := context.Background()
	repo := adapters.NewOrderGorm(db)
	o := placed(t, db, "lee", now.Add(-time.Hour))
	type result struct {
		applied bool
		err     error
	}
	done := make(chan result, 1)
	n, err := repo.ExpirePending(ctx, now, 100, func(cur *order.Order) error {
		go func() {
			applied, err := repo.ApplyOnce(ctx, "order", "e-"+o.ID(), o.ID(), func(cur *order.Order) error {
				cur.ApplyPayment(order.PaymentOutcome{PaymentID: "p-lee", Succeeded: true}, now)
				return nil
			})
			done <- result{applied, err}
		}()
		waitForLockWait(t, db)
		cur.Expire(now, now)
		return nil
	})
	if err != nil || n != 1 {
		t.Fatalf("expiry: %d, %v", n, err)
	}
	r := <-done
	if r.err != nil || !r.applied {
		t.Fatalf("payment result: applied %v, %v; want it recorded", r.applied, r.err)
	}
	if s := stored(t, repo, o); s.Status != order.Cancelled || s.PaymentID != "" || s.CancelReason != order.PaymentTimeout {
		t.Fatalf("order = %+v, want CANCELLED by the timeout, unpaid", s)
	}
	if got := eventTypes(t, db, o.ID()); fmt.Sprint(got) != "[order.created order.cancelled]" {
		t.Fatalf("outbox: %v", got)
	}
}

// Payment results and two replicas' expiry rounds racing over many orders
// leave each order PAID with no order.cancelled, or CANCELLED by the timeout
// with exactly one and no payment, and each expiry counted once.
func TestExpiryRacingPaymentResultsSettlesEachOrderOnce(t *testing.T) {
	db := stores(t)[database.Postgres]
	ctx := context.Background()
	repos := []*adapters.OrderGorm{adapters.NewOrderGorm(db), adapters.NewOrderGorm(db)}
	const orders = 120
	os := make([]*order.Order, orders)
	for i := range os {
		os[i] = placed(t, db, "mia", now.Add(-time.Hour))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		expired int
		paid    = map[string]bool{}
	)
	for _, repo := range repos {
		wg.Go(func() {
			for {
				n, err := expire(ctx, repo, now, now, 7)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				expired += n
				mu.Unlock()
				if n == 0 {
					return
				}
			}
		})
	}
	for i, o := range os {
		repo := repos[i%2]
		wg.Go(func() {
			var changed bool
			applied, err := repo.ApplyOnce(ctx, "order", "e-"+o.ID(), o.ID(), func(cur *order.Order) error {
				changed = cur.ApplyPayment(order.PaymentOutcome{PaymentID: "p-" + o.ID(), Succeeded: true}, now)
				return nil
			})
			if err != nil || !applied {
				t.Errorf("result for %s: applied %v, %v", o.ID(), applied, err)
			}
			mu.Lock()
			paid[o.ID()] = changed
			mu.Unlock()
		})
	}
	wg.Wait()
	cancelled := 0
	for _, o := range os {
		s := stored(t, repos[0], o)
		events := fmt.Sprint(eventTypes(t, db, o.ID()))
		switch {
		case s.Status == order.Paid && paid[o.ID()] && s.PaymentID == "p-"+o.ID() && events == "[order.created]":
		case s.Status == order.Cancelled && !paid[o.ID()] && s.PaymentID == "" && s.CancelReason == order.PaymentTimeout &&
			events == "[order.created order.cancelled]":
			cancelled++
		default:
			t.Errorf("order %+v (result applied: %v), events %s", s, paid[o.ID()], events)
		}
	}
	if cancelled != expired {
		t.Errorf("%d orders cancelled, the rounds counted %d", cancelled, expired)
	}
	t.Logf("%d of %d orders expired before their result", cancelled, orders)
}

// An order cancelled before migration 0003 (or by a replica of the release
// before it) has no reason stored; only a user could cancel then, and it
// reads as one.
func TestOrderCancelledBeforeReasonsReadsAsTheUsers(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			repo := adapters.NewOrderGorm(db)
			o := placed(t, db, "ned", now)
			if err := db.Exec(`UPDATE orders SET status = 'CANCELLED', cancel_reason = '' WHERE id = ?`, o.ID()).Error; err != nil {
				t.Fatal(err)
			}
			if s := stored(t, repo, o); s.CancelReason != order.CancelledByUser {
				t.Fatalf("reason %q, want %q", s.CancelReason, order.CancelledByUser)
			}
		})
	}
}
