package adapters_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
)

// TestForgetKeysDeletesInBatches: ForgetKeys removes expired idempotency
// keys ForgetKeysBatch rows a statement, keeps the rest, and migration
// 0004's index on created_at exists on both dialects. It was one DELETE of
// every expired key (on SQLite holding the write lock every order needs) on
// a column with no index: 2.5 batches of keys went in one statement.
func TestForgetKeysDeletesInBatches(t *testing.T) {
	ctx := context.Background()
	cut := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const expired, kept = 2*adapters.ForgetKeysBatch + adapters.ForgetKeysBatch/2, 3
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			var rows []map[string]any
			for i := range expired + kept {
				at := cut.Add(-time.Duration(i+1) * time.Minute)
				if i >= expired {
					at = cut.Add(time.Duration(i) * time.Second) // at or after the cut: kept
				}
				rows = append(rows, map[string]any{"user_id": "u" + fmt.Sprint(i%7), "idem_key": fmt.Sprint("k", i),
					"request_hash": "h", "status_code": 201, "body": "{}", "order_id": fmt.Sprint("o", i), "created_at": at})
			}
			if err := db.Table("idempotency_keys").CreateInBatches(rows, 500).Error; err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var deletes []int64
			count := func(tx *gorm.DB) {
				if sql := tx.Statement.SQL.String(); strings.HasPrefix(sql, "DELETE FROM") && strings.Contains(sql, "idempotency_keys") {
					mu.Lock()
					deletes = append(deletes, tx.RowsAffected)
					mu.Unlock()
				}
			}
			if err := db.Callback().Raw().After("gorm:raw").Register("test:forget_raw", count); err != nil {
				t.Fatal(err)
			}
			if err := db.Callback().Delete().After("gorm:delete").Register("test:forget_delete", count); err != nil {
				t.Fatal(err)
			}
			n, err := adapters.NewOrderGorm(db).ForgetKeys(ctx, cut)
			if err != nil {
				t.Fatal(err)
			}
			if want := []int64{adapters.ForgetKeysBatch, adapters.ForgetKeysBatch, adapters.ForgetKeysBatch / 2}; n != expired || !slices.Equal(deletes, want) {
				t.Errorf("forgot %d keys in DELETEs of %v rows; want %d in %v", n, deletes, expired, want)
			}
			var left int64
			if err := db.Table("idempotency_keys").Count(&left).Error; err != nil || left != kept {
				t.Errorf("%d keys left (%v); want the %d at or after the cut", left, err, kept)
			}
			q := "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'idempotency_keys_created_at'"
			if database.Dialect(db) == database.Postgres {
				q = "SELECT count(*) FROM pg_indexes WHERE indexname = 'idempotency_keys_created_at'"
			}
			var idx int64
			if err := db.Raw(q).Scan(&idx).Error; err != nil || idx != 1 {
				t.Errorf("index idempotency_keys_created_at: %d (%v); want it", idx, err)
			}
		})
	}
}
