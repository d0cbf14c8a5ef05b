package outbox

import (
	"context"
	"testing"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

// A round whose every row was set aside (here for unreadable headers) counted as one whose every publish failed, the
// broker down: it reported no more rows, so the key's next row, claimable once the row ahead was set aside, waited for
// the next poll (Interval, 500 ms) instead of going out in the round right after. A set-aside row is done with, not
// failed: the round reports the row behind it.
func TestRoundAfterSetAsideReportsMore(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		if err := migrate.Up(ctx, db, Migrations); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			e, err := event.New("order.created", "/test", "a", map[string]string{"order_id": "a"})
			if err != nil {
				t.Fatal(err)
			}
			if err := Add(ctx, db, "t", "a", e); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Exec("UPDATE outbox SET headers = 'null' WHERE id = (SELECT min(id) FROM outbox)").Error; err != nil {
			t.Fatal(err)
		}
		r := NewRelay(db, discard{}, RelayOptions{})
		if n, more, err := r.round(ctx); err != nil || n != 1 || !more {
			t.Fatalf("round = %d, %v, %v; want the unreadable row set aside and more (the row behind it)", n, more, err)
		}
		if n, more, err := r.round(ctx); err != nil || n != 1 || more {
			t.Fatalf("round = %d, %v, %v; want the row behind published and no more", n, more, err)
		}
	})
}
