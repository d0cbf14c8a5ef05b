package outbox_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// Cleanup deletes a backlog of old sent rows in statements of at most CleanupBatch rows each, not in one DELETE that
// holds every row's lock (and SQLite's write lock) until the last is gone; a set-aside row among them is kept.
func TestCleanupDeletesInBatches(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx := context.Background()
		for i := range 25 {
			add(t, ctx, db, "t", "k", i)
		}
		add(t, ctx, db, "t", "aside", 1)
		old := time.Now().UTC().Add(-100 * time.Hour)
		db.Exec("UPDATE outbox SET sent_at = ?", old)
		db.Exec("UPDATE outbox SET last_error = 'too large' WHERE key = 'aside'")

		deletes := dbtest.RowsPerStatement(t, db, "DELETE FROM outbox")

		r := outbox.NewRelay(db, &fakeWriter{}, outbox.RelayOptions{CleanupBatch: 10})
		n, err := r.Cleanup(ctx, time.Now().Add(-72*time.Hour))
		if err != nil || n != 25 {
			t.Fatalf("deleted %d (%v), want 25", n, err)
		}
		if got := deletes(); !slices.Equal(got, []int64{10, 10, 5}) {
			t.Fatalf("rows per DELETE %v, want [10 10 5]", got)
		}
		var keys []string
		db.Raw("SELECT key FROM outbox").Scan(&keys)
		if !slices.Equal(keys, []string{"aside"}) {
			t.Fatalf("left %v, want the set-aside row only", keys)
		}
	})
}

// Run's cleanup of a backlog of sent rows lets a row nudged meanwhile go out between two of its batches: it went out
// only after the last, the rows written during a cleanup of a large backlog all held back for as long as it took.
func TestRunPublishesBetweenCleanupBatches(t *testing.T) {
	dbtest.Each(t, func(t *testing.T, db *gorm.DB) {
		migrated(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for i := range 50 {
			add(t, ctx, db, "t", "old", i)
		}
		db.Exec("UPDATE outbox SET sent_at = ?", time.Now().UTC().Add(-100*time.Hour))

		var mu sync.Mutex
		var happened []string // "delete" for each DELETE of the outbox, "publish" for each publish, in order
		var r *outbox.Relay
		err := db.Callback().Raw().After("gorm:raw").Register("test:cleanup_then_nudge", func(tx *gorm.DB) {
			if !strings.HasPrefix(tx.Statement.SQL.String(), "DELETE FROM outbox") {
				return
			}
			mu.Lock()
			happened = append(happened, "delete")
			first := len(happened) == 1
			mu.Unlock()
			if first { // a row committed while the cleanup goes on
				e, err := event.New("order.created", "/test", "new", map[string]string{"order_id": "new"})
				if err == nil {
					err = db.Transaction(func(tx *gorm.DB) error { return outbox.Add(ctx, tx, "t", "new", e) })
				}
				if err != nil {
					t.Errorf("add a row during the cleanup: %v", err)
				}
				r.Nudge()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		w := writerFunc(func(_ context.Context, msgs ...kafka.Message) error {
			mu.Lock()
			defer mu.Unlock()
			for range msgs {
				happened = append(happened, "publish")
			}
			return nil
		})
		r = outbox.NewRelay(db, w, outbox.RelayOptions{CleanupBatch: 10, Interval: time.Hour, MaxIdleInterval: time.Hour})
		stopped := make(chan struct{})
		go func() { _ = r.Run(ctx); close(stopped) }()
		defer func() { cancel(); <-stopped }()

		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			got := slices.Clone(happened)
			mu.Unlock()
			if i := slices.Index(got, "publish"); i >= 0 && slices.Contains(got[i:], "delete") {
				return // published while the cleanup had batches left
			}
			if len(got) == 7 { // the backlog's 5 full batches and the short one, then the publish
				t.Fatalf("the row nudged during the cleanup went out after its last batch: %v", got)
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s: %v", got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
