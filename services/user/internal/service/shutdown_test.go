package service_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestShutdownHookEndsWithItsContext: the shutdown hook (stop the workers,
// close the connections) gets SHUTDOWN_TIMEOUT like every step of the
// stop, and must end when that runs out even if what it waits for does not:
// the stop budgets of compose and Kubernetes count each step at most once
// SHUTDOWN_TIMEOUT. Here the outbox relay's claim waits on a locked outbox
// table, which the relay itself gives up on only 5 s after the stop; the
// hook ignored its context and held the stop until then, and returned
// nothing to say it had overrun.
func TestShutdownHookEndsWithItsContext(t *testing.T) {
	url := testenv.Postgres(t)
	h := newHarness(t, map[string]string{"DATABASE_URL": url, "SHUTDOWN_TIMEOUT": "300ms"})

	other, err := database.Open(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = database.Close(other) })
	lock := other.Begin()
	if err := lock.Exec("LOCK TABLE outbox IN EXCLUSIVE MODE").Error; err != nil {
		t.Fatal(err)
	}
	// Let go before the harness's Stop, which waits for the relay (cleanups
	// run last added first).
	t.Cleanup(func() { lock.Rollback() })
	claimWaits := func() bool {
		var n int64
		err := other.Raw(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
AND wait_event_type = 'Lock' AND query LIKE '%outbox%'`).Scan(&n).Error
		if err != nil {
			t.Fatal(err)
		}
		return n > 0
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := make(chan struct{})
	close(gone) // no caller routes here: no wait after deregistering
	ctx, stop := context.WithCancel(server.CallersStopped(server.Hosted(t.Context()), gone))
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- h.svc.Server.ServeStarting(ctx, ln, h.svc.Start)
	}()
	for deadline := time.Now().Add(10 * time.Second); !claimWaits(); {
		if time.Now().After(deadline) {
			t.Fatal("the relay's claim never waited on the locked outbox")
		}
		h.svc.Relay.Nudge()
		time.Sleep(20 * time.Millisecond)
	}

	stop()
	err = <-served
	if waits := claimWaits(); !errors.Is(err, context.DeadlineExceeded) || !waits {
		t.Fatalf("the stop returned %v with the relay's claim still waiting: %v; want the hook cut off by its "+
			"SHUTDOWN_TIMEOUT while the claim waits", err, waits)
	}
}
