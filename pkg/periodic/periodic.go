// Package periodic runs a background round on a timer: a first round a
// while after start, then one at every interval, until its context ends.
//
// Why a delay before the first round: the services' housekeeping (expired
// refresh tokens, old idempotency keys and dedup records) would otherwise
// take a second pool connection beside the start-up's own queries; and why
// not a whole interval: replicas replaced more often than that (every
// deployment) would never run it.
package periodic

import (
	"context"
	"time"
)

// Run calls fn once first has passed, then again each time every has
// passed since the previous round began, until ctx ends. It returns once
// ctx has ended and a round in progress (which gets ctx, to stop with it)
// has returned; no round starts after ctx has ended. A round that takes
// longer than every is followed by the next at once, never by two.
func Run(ctx context.Context, first, every time.Duration, fn func(context.Context)) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(every)
		}
		// Both may have been ready, and select picks either: a round
		// started after the stop would only fail (and log) at once.
		if ctx.Err() != nil {
			return
		}
		fn(ctx)
	}
}
