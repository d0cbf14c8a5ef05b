package outbox

import (
	"context"
	"testing"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

type discard struct{}

func (discard) WriteMessages(context.Context, ...kafka.Message) error { return nil }

// round says "more" exactly when a round now would find rows, so Run neither
// polls an empty table after every batch nor leaves a key's next row waiting
// for the ticker.
func TestRoundReportsMore(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		if err := migrate.Up(ctx, db, Migrations); err != nil {
			t.Fatal(err)
		}
		add := func(keys ...string) {
			t.Helper()
			for _, k := range keys {
				e, err := event.New("order.created", "/test", k, map[string]string{"order_id": k})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Transaction(func(tx *gorm.DB) error { return Add(ctx, tx, "t", k, e) }); err != nil {
					t.Fatal(err)
				}
			}
		}
		r := NewRelay(db, discard{}, RelayOptions{BatchSize: 3})
		step := func(wantN int, wantMore bool) {
			t.Helper()
			n, more, err := r.round(ctx)
			if err != nil || n != wantN || more != wantMore {
				t.Fatalf("round = %d, %v, %v; want %d, %v", n, more, err, wantN, wantMore)
			}
		}
		add("a")
		step(1, false) // the common case: one row, no empty round after it
		step(0, false)
		add("a", "a", "b") // a's second row waits behind its first
		step(2, true)
		step(1, false)
		add("c", "d", "e", "f") // a full batch may have left rows
		step(3, true)
		step(1, false)
		// Kafka down: a full batch that all failed is no reason to claim the next one at once. Back to back, each
		// round waited out PublishTimeout, and on SQLite held the write lock the service's own writes need.
		r.w = down{}
		add("g", "h", "i", "j")
		step(3, false)
		step(1, false)
	})
}

// down is a broker that refuses every write.
type down struct{}

func (down) WriteMessages(context.Context, ...kafka.Message) error { return kafka.LeaderNotAvailable }
