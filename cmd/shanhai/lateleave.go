package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/shanhai-dev/shanhai/pkg/server"
)

// lateLeave is a part's stop error with the services' deregistrations that
// timed out against the run's own etcd taken out: nil when they were all it
// held. The embedded etcd closes right after the parts (Platform.Stop), so a
// lease revoke it did not answer within pkg/server.DeregisterTimeout loses
// nothing: no caller is left to be routed by it, and its data is this run's.
// Under load (24 on 2 cores) revokes missed that second and a clean stop
// exited 1. Such a stop is logged at WARN; any other failure is returned
// whole, and against servers of a -native run, whose etcd outlives the run
// and keeps the lease until its TTL, a late deregistration is still a
// failure. A child process's stop is only its exit status, so under
// -processes it cannot be told apart and counts.
func (p *Platform) lateLeave(name string, err error) error {
	if err == nil || p.Infra == nil || !onlyLateDeregistrations(err) {
		return err
	}
	slog.Warn("a part's deregistration timed out against the run's own etcd, which stops next; not a failed stop",
		"part", name, "err", err)
	return nil
}

// onlyLateDeregistrations tells whether every error in err's tree ends in a
// pkg/server deregistration step that ran out of time.
func onlyLateDeregistrations(err error) bool {
	if step, ok := err.(*server.StepError); ok {
		return step.Step == server.DeregisterStep && errors.Is(step.Err, context.DeadlineExceeded)
	}
	switch e := err.(type) {
	case interface{ Unwrap() []error }:
		errs := e.Unwrap()
		for _, err := range errs {
			if !onlyLateDeregistrations(err) {
				return false
			}
		}
		return len(errs) > 0
	case interface{ Unwrap() error }:
		next := e.Unwrap()
		return next != nil && onlyLateDeregistrations(next)
	}
	return false
}
