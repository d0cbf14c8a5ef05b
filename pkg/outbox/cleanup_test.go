package outbox_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

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

		var mu sync.Mutex
		var deletes []int64 // rows each DELETE of the outbox removed, in order
		err := db.Callback().Raw().After("gorm:raw").Register("test:cleanup_deletes", func(tx *gorm.DB) {
			if strings.HasPrefix(tx.Statement.SQL.String(), "DELETE FROM outbox") {
				mu.Lock()
				deletes = append(deletes, tx.RowsAffected)
				mu.Unlock()
			}
		})
		if err != nil {
			t.Fatal(err)
		}

		r := outbox.NewRelay(db, &fakeWriter{}, outbox.RelayOptions{CleanupBatch: 10})
		n, err := r.Cleanup(ctx, time.Now().Add(-72*time.Hour))
		if err != nil || n != 25 {
			t.Fatalf("deleted %d (%v), want 25", n, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(deletes, []int64{10, 10, 5}) {
			t.Fatalf("rows per DELETE %v, want [10 10 5]", deletes)
		}
		var keys []string
		db.Raw("SELECT key FROM outbox").Scan(&keys)
		if !slices.Equal(keys, []string{"aside"}) {
			t.Fatalf("left %v, want the set-aside row only", keys)
		}
	})
}
