package service_test

import (
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// A housekeeping round forgets idempotency keys past 24 hours and processed-event ids past 8 days, and keeps the
// newer ones (pkg/periodic runs it; this checks what a round does on the real database).
func TestHousekeepingForgetsOnlyWhatIsPastItsRetention(t *testing.T) {
	h := newHarness(t)
	db := h.svc.DB
	now := time.Now().UTC()
	for key, age := range map[string]time.Duration{"old": 25 * time.Hour, "new": time.Hour} {
		if err := db.Exec(`INSERT INTO idempotency_keys (user_id, idem_key, request_hash, status_code, body, order_id, created_at)
			VALUES ('housekeeping', ?, 'h', 201, '{}', 'o', ?)`, key, now.Add(-age)).Error; err != nil {
			t.Fatal(err)
		}
	}
	for id, age := range map[string]time.Duration{"old": 9 * 24 * time.Hour, "new": time.Hour} {
		if err := db.Exec(`INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ('housekeeping', ?, ?)`,
			id, now.Add(-age)).Error; err != nil {
			t.Fatal(err)
		}
	}
	service.Housekeep(h.svc, t.Context())
	// left lists column of the rows this test wrote (owner = 'housekeeping').
	left := func(table, owner, column string) (out []string) {
		if err := db.Table(table).Where(owner+" = ?", "housekeeping").Pluck(column, &out).Error; err != nil {
			t.Fatal(err)
		}
		return out
	}
	if keys := left("idempotency_keys", "user_id", "idem_key"); len(keys) != 1 || keys[0] != "new" {
		t.Errorf("idempotency keys left: %v, want [new]", keys)
	}
	if ids := left("processed_events", "consumer", "event_id"); len(ids) != 1 || ids[0] != "new" {
		t.Errorf("processed events left: %v, want [new]", ids)
	}
}
