package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A stop's failed step is a *StepError naming it, so that a host can tell a
// deregistration that ran out of time (cmd/shanhai's embedded run, whose
// etcd closes right after, does not count it) from a failure that loses
// something.
func TestFailedDeregistrationIsNamedStepError(t *testing.T) {
	s, _ := newTestServer(t, Options{ShutdownTimeout: 5 * time.Second, Deregister: func(ctx context.Context) error {
		<-ctx.Done() // an etcd that never answers the revoke
		return ctx.Err()
	}})
	err := s.StartFailed(errors.New("no listener"))
	var step *StepError
	if !errors.As(err, &step) || step.Step != DeregisterStep || !errors.Is(step.Err, context.DeadlineExceeded) {
		t.Fatalf("StartFailed = %v, want a %q *StepError of a deadline", err, DeregisterStep)
	}
	if want := "deregister: " + context.DeadlineExceeded.Error(); step.Error() != want {
		t.Errorf("step error %q, want %q as before", step.Error(), want)
	}
}
