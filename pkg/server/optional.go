package server

import (
	"context"
	"log/slog"
	"sync/atomic"
)

// Optional is the readiness check of a dependency the service answers
// without (a cache, limits with a local fallback): it never fails /readyz.
// Failing readiness on an outage of such a dependency takes every replica out
// of its Service at once, a total outage caused by a cache. It still probes,
// in the background so that a hung dependency cannot hold /readyz past its
// deadline, and logs when the dependency becomes unreachable and when it is
// back. The probe runs without /readyz's deadline, so it must bound itself
// (its client's own timeouts); one runs at a time.
func Optional(name string, probe func(context.Context) error, log *slog.Logger) Check {
	var down, probing atomic.Bool
	return Check{Name: name, Probe: func(ctx context.Context) error {
		if !probing.CompareAndSwap(false, true) {
			return nil // the last probe has not answered yet
		}
		go func() {
			defer probing.Store(false)
			ctx := context.WithoutCancel(ctx)
			err := probe(ctx)
			switch {
			case err != nil && down.CompareAndSwap(false, true):
				log.WarnContext(ctx, name+" unreachable; serving without it, readiness unaffected", "check", name, "error", err.Error())
			case err == nil && down.CompareAndSwap(true, false):
				log.InfoContext(ctx, name+" reachable again", "check", name)
			}
		}()
		return nil
	}}
}
