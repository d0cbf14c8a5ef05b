// Package backoff paces retries of transient sink errors: exponential with
// full jitter, capped, reset by progress. The bridge retries such errors
// forever (a sink that is down must not lose messages), so the cap is what
// keeps a long outage from turning into a tight loop or an hour-long sleep.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is not safe for concurrent use; each worker owns one.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Reset is called after progress so the next failure retries quickly.
func (b *Backoff) Reset() { b.n = 0 }

// Next returns the next delay.
func (b *Backoff) Next() time.Duration {
	d := b.Base << min(b.n, 20)
	if d <= 0 || d > b.Max {
		d = b.Max
	}
	b.n++
	return d/2 + rand.N(d/2+1)
}

// Wait sleeps for the next delay or until ctx ends; it reports whether the
// full delay elapsed.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
