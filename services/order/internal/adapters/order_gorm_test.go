package adapters_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/testenv/storetest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

var now = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newOrder(t *testing.T, db *gorm.DB, user string, qty int) *order.Order {
	t.Helper()
	ps, err := adapters.NewCatalogGorm(db).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	o, err := order.New(uuid.Must(uuid.NewV7()).String(), user, []order.Requested{{SKU: "TEA-GREEN-100G", Quantity: qty}, {SKU: "CUP-PORCELAIN", Quantity: 1}}, catalog.Index(ps), now)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestOrderGorm(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			repo := adapters.NewOrderGorm(db)

			t.Run("CreateStoresOrderReplayAndEventAtomically", func(t *testing.T) {
				o := newOrder(t, db, "alice", 3)
				rp := order.Replay{UserID: "alice", Key: "k-" + o.ID(), RequestHash: "h1", StatusCode: 201, Body: []byte(`{"id":"x"}`)}
				if err := repo.Create(ctx, o, rp); err != nil {
					t.Fatal(err)
				}
				got, err := repo.Get(ctx, "alice", o.ID())
				if err != nil {
					t.Fatal(err)
				}
				s := got.Snapshot()
				if s.TotalCents != 3*1890+1200 || s.Status != order.Pending || len(s.Lines) != 2 || s.Lines[0].SKU != "TEA-GREEN-100G" || !s.CreatedAt.Equal(now) {
					t.Fatalf("stored order = %+v", s)
				}
				r, err := repo.FindReplay(ctx, "alice", rp.Key)
				if err != nil || r.RequestHash != "h1" || string(r.Body) != `{"id":"x"}` || r.StatusCode != 201 {
					t.Fatalf("replay = %+v, %v", r, err)
				}
				rows := storetest.OutboxRows(t, db, o.ID())
				if len(rows) != 1 || rows[0].EventType != "order.created" || rows[0].Topic != adapters.Topic {
					t.Fatalf("outbox rows = %+v", rows)
				}
				// Same key again, even for another order: refused, and
				// nothing of the second order is stored.
				o2 := newOrder(t, db, "alice", 1)
				if err := repo.Create(ctx, o2, rp); !errors.Is(err, order.ErrDuplicateKey) {
					t.Fatalf("duplicate key: %v", err)
				}
				if _, err := repo.Get(ctx, "alice", o2.ID()); !errors.Is(err, order.ErrNotFound) {
					t.Fatalf("second order was stored: %v", err)
				}
				if len(storetest.OutboxRows(t, db, o2.ID())) != 0 {
					t.Fatal("second order's event was stored")
				}
				// Keys are per user.
				rp.UserID = "bob"
				if err := repo.Create(ctx, newOrder(t, db, "bob", 1), rp); err != nil {
					t.Fatalf("bob's same key: %v", err)
				}
			})

			t.Run("ForgetKeys", func(t *testing.T) {
				o := newOrder(t, db, "frank", 1)
				if err := repo.Create(ctx, o, order.Replay{UserID: "frank", Key: "old", StatusCode: 201}); err != nil {
					t.Fatal(err)
				}
				if _, err := repo.ForgetKeys(ctx, now); err != nil {
					t.Fatal(err)
				}
				if _, err := repo.FindReplay(ctx, "frank", "old"); err != nil {
					t.Fatalf("a key created at the cut-off was forgotten: %v", err)
				}
				if _, err := repo.ForgetKeys(ctx, now.Add(time.Second)); err != nil {
					t.Fatal(err)
				}
				if _, err := repo.FindReplay(ctx, "frank", "old"); !errors.Is(err, order.ErrNotFound) {
					t.Fatalf("old key still there: %v", err)
				}
				if _, err := repo.Get(ctx, "frank", o.ID()); err != nil {
					t.Fatalf("forgetting the key lost the order: %v", err)
				}
			})

			t.Run("OtherUsersOrderIsNotFound", func(t *testing.T) {
				o := newOrder(t, db, "alice", 1)
				if err := repo.Create(ctx, o, order.Replay{UserID: "alice", Key: o.ID(), StatusCode: 201}); err != nil {
					t.Fatal(err)
				}
				if _, err := repo.Get(ctx, "mallory", o.ID()); !errors.Is(err, order.ErrNotFound) {
					t.Fatalf("get: %v", err)
				}
				_, err := repo.Update(ctx, "mallory", o.ID(), func(o *order.Order) error { return o.Cancel(now) })
				if !errors.Is(err, order.ErrNotFound) {
					t.Fatalf("update: %v", err)
				}
				if got, _ := repo.Get(ctx, "alice", o.ID()); got.Status() != order.Pending {
					t.Fatalf("status after mallory's cancel = %s", got.Status())
				}
			})

			t.Run("CancelWritesEvent", func(t *testing.T) {
				o := newOrder(t, db, "carol", 1)
				if err := repo.Create(ctx, o, order.Replay{UserID: "carol", Key: o.ID(), StatusCode: 201}); err != nil {
					t.Fatal(err)
				}
				got, err := repo.Update(ctx, "carol", o.ID(), func(o *order.Order) error { return o.Cancel(now) })
				if err != nil || got.Status() != order.Cancelled {
					t.Fatalf("cancel = %v, %v", got, err)
				}
				if _, err := repo.Update(ctx, "carol", o.ID(), func(o *order.Order) error { return o.Cancel(now) }); err != nil {
					t.Fatalf("second cancel: %v", err)
				}
				rows := storetest.OutboxRows(t, db, o.ID())
				if len(rows) != 2 || rows[1].EventType != "order.cancelled" {
					t.Fatalf("outbox = %+v, want created then one cancelled", rows)
				}
			})

			t.Run("ApplyOnceDedupsAndNeverMovesBackwards", func(t *testing.T) {
				o := newOrder(t, db, "dave", 1)
				if err := repo.Create(ctx, o, order.Replay{UserID: "dave", Key: o.ID(), StatusCode: 201}); err != nil {
					t.Fatal(err)
				}
				apply := func(eventID string, ok bool) (bool, bool) {
					changed := false
					applied, err := repo.ApplyOnce(ctx, "order", eventID, o.ID(), func(o *order.Order) error {
						changed = o.ApplyPayment(order.PaymentOutcome{PaymentID: "p1", Succeeded: ok, Reason: "r"}, now)
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
					return applied, changed
				}
				e1 := "e1-" + o.ID()
				if a, c := apply(e1, true); !a || !c {
					t.Fatalf("first: applied %v changed %v", a, c)
				}
				if a, _ := apply(e1, true); a {
					t.Fatal("duplicate event applied twice")
				}
				if a, c := apply("e2-"+o.ID(), false); !a || c {
					t.Fatalf("late failure: applied %v changed %v", a, c)
				}
				got, _ := repo.Get(ctx, "dave", o.ID())
				if got.Status() != order.Paid || got.PaymentID() != "p1" {
					t.Fatalf("status = %s", got.Status())
				}
				_, err := repo.ApplyOnce(ctx, "order", "e3", uuid.NewString(), func(*order.Order) error { return nil })
				if !errors.Is(err, order.ErrNotFound) {
					t.Fatalf("unknown order: %v", err)
				}
				// The failed attempt must not have recorded e3 as processed.
				var n int64
				db.Table("processed_events").Where("event_id = ?", "e3").Count(&n)
				if n != 0 {
					t.Fatal("event for a missing order was marked processed")
				}
			})

			t.Run("ListPagesNewestFirstAndFilters", func(t *testing.T) {
				user := "erin-" + name
				var ids []string
				for i := range 5 {
					o := newOrder(t, db, user, 1)
					if err := repo.Create(ctx, o, order.Replay{UserID: user, Key: fmt.Sprint(i), StatusCode: 201}); err != nil {
						t.Fatal(err)
					}
					ids = append([]string{o.ID()}, ids...)
				}
				if _, err := repo.Update(ctx, user, ids[1], func(o *order.Order) error { return o.Cancel(now) }); err != nil {
					t.Fatal(err)
				}
				var got []string
				q := order.ListQuery{Limit: 2}
				for pages := 0; ; pages++ {
					os, next, err := repo.List(ctx, user, q)
					if err != nil {
						t.Fatal(err)
					}
					for _, o := range os {
						got = append(got, o.ID())
						if len(o.Lines()) != 2 {
							t.Fatalf("list did not load lines of %s", o.ID())
						}
					}
					if next == "" {
						break
					}
					if pages > 5 {
						t.Fatal("pagination does not end")
					}
					q.Cursor = next
				}
				if fmt.Sprint(got) != fmt.Sprint(ids) {
					t.Fatalf("pages = %v, want %v", got, ids)
				}
				os, _, err := repo.List(ctx, user, order.ListQuery{Status: order.Cancelled, Limit: 10})
				if err != nil || len(os) != 1 || os[0].ID() != ids[1] {
					t.Fatalf("status filter = %v, %v", os, err)
				}
			})
		})
	}
}
