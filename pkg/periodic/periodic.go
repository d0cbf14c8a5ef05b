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

// Run calls fn a first time first after it is called, then every after
// the previous round began, until ctx ends; it returns once ctx has ended
// and any round in progress (which gets ctx, to stop with it) has
// returned. A round that takes longer than every is followed by the next at
// once, never by two.
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
		fn(ctx)
	}
}
