package service_test

import (
	"context"
	"errors"
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/server"
)

// TestStopWhileStarting: Stop called while Start runs (a test's cleanup racing a Start, an embedded run stopped
// during start-up) must not race on the workers' stop function: Start wrote it while Stop read it, unsynchronised,
// a data race under -race, and a Stop that read it before Start wrote it left Start's relay and housekeeping running
// on closed connections, never stopped. Whichever comes first, the workers end with Stop, and a Start after it is
// refused: it would run them on closed connections, with nothing left to stop them.
func TestStopWhileStarting(t *testing.T) {
	h := newHarness(t, nil)
	started := make(chan error, 1)
	go func() { started <- h.svc.Start(context.Background()) }()
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	// The racing Start either ran first (and Stop ended its workers) or came after Stop and was refused.
	if err := <-started; err != nil && !errors.Is(err, server.ErrWorkersStopped) {
		t.Fatalf("Start beside Stop: %v", err)
	}
	if err := h.svc.Start(context.Background()); !errors.Is(err, server.ErrWorkersStopped) {
		t.Errorf("Start after Stop = %v, want server.ErrWorkersStopped", err)
	}
}
