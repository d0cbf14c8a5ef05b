package service_test

import (
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
)

// TestStopCutsOffAResultStuckOnALock stops the service while a payment
// result waits on its order's row, which another transaction holds: Stop
// must end within SHUTDOWN_TIMEOUT (5 s here), not wait for the lock, and
// the result cut off must be left for redelivery, not applied or dropped.
func TestStopCutsOffAResultStuckOnALock(t *testing.T) {
	h := newHarness(t)
	o := h.createOrder("alice", `{"items":[{"sku":"TEA-OOLONG-100G","quantity":1}]}`)

	tx := h.svc.DB.Begin()
	defer tx.Rollback()
	if err := tx.Exec("SELECT id FROM orders WHERE id = ? FOR UPDATE", o.ID).Error; err != nil {
		t.Fatal(err)
	}
	h.publishResult(t, "payment.succeeded", "e1", o.ID, "", nil)
	runtest.Eventually(t, 10*time.Second, "the result to wait on the order's lock", func() bool {
		var waiting int
		err := h.svc.DB.Raw(`SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting).Error
		return err == nil && waiting > 0
	})

	stopped := make(chan time.Duration, 1)
	start := time.Now()
	go func() { _ = h.svc.Stop(); stopped <- time.Since(start) }()
	select {
	case took := <-stopped:
		if took > 8*time.Second {
			t.Fatalf("Stop took %v with a result waiting on a lock; want SHUTDOWN_TIMEOUT (5s) and little more", took)
		}
	case <-time.After(15 * time.Second):
		_ = tx.Rollback() // let the stuck handler finish, so the test's cleanup does not hang too
		<-stopped
		t.Fatal("Stop still waited for the order's lock 15 s after it was called (SHUTDOWN_TIMEOUT 5s)")
	}
	if err := tx.Rollback().Error; err != nil {
		t.Fatal(err)
	}
	// Cut off, not terminated: the result waits for its redelivery.
	ci, err := h.stream.JS.Consumer(t.Context(), h.stream.Name, h.names.Durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ci.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 0 {
		t.Fatalf("the result was settled (ack floor %d); want it left for redelivery", info.AckFloor.Stream)
	}
}
