package service_test

import (
	"context"
	"testing"
)

// TestStopWhileStarting: Stop called while Start runs (a test's cleanup racing a Start, an embedded run stopped
// during start-up) must not race on the workers' stop function: Start wrote it while Stop read it, unsynchronised,
// a data race under -race, and a Stop that read it before Start wrote it left Start's relay and housekeeping running
// on closed connections, never stopped. Whichever comes first, the workers end with Stop and a Start after it starts
// none.
func TestStopWhileStarting(t *testing.T) {
	h := newHarness(t, nil)
	started := make(chan struct{})
	go func() {
		defer close(started)
		h.svc.Start(context.Background())
	}()
	if err := h.svc.Stop(); err != nil {
		t.Fatal(err)
	}
	<-started
	h.svc.Start(context.Background()) // after Stop: starts nothing, so nothing is left for the race detector either
}
