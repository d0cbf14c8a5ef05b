package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/internal/dbtest"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
)

// created_at is the clock of the replica that called Add, and outbox.lag is measured on the relay's: with a writer
// whose clock is ahead of the relay's by more than the row waited, the lag came out negative. A histogram takes a
// negative value into its lowest bucket and its sum, so outbox.lag's _sum went down, which Prometheus reads as a
// counter reset. The lag is never below zero, as outbox.pending.age is not.
func TestRelayLagIsNeverNegative(t *testing.T) {
	db := migrated(t, dbtest.SQLite(t))
	ctx := context.Background()
	topic := fmt.Sprintf("lag-%d", time.Now().UnixNano())
	add(t, ctx, db, topic, "ahead", 1)
	if err := db.Exec("UPDATE outbox SET created_at = ?", time.Now().UTC().Add(time.Minute)).Error; err != nil {
		t.Fatal(err)
	}
	if n, err := outbox.NewRelay(db, &fakeWriter{}, outbox.RelayOptions{}).RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("RunOnce = %d, %v; want 1 row", n, err)
	}
	_, hists := points(t, topic)
	if lag, ok := hists["outbox.lag"]; !ok || lag.Count != 1 || lag.Sum < 0 {
		t.Fatalf("outbox.lag for the row: count %d, sum %v s (recorded: %v); want 1 value, not below 0", lag.Count, lag.Sum, ok)
	}
}
