package limit

import (
	"context"
	"time"
)

// Decision is the outcome of one Allow call, with enough detail to fill the
// RateLimit response headers.
type Decision struct {
	Allowed bool
	// Limit is the quota: how many requests a fresh key may make at once
	// (the burst of the bucket).
	Limit int
	// Remaining is how many more requests would be allowed right now.
	Remaining int
	// RetryAfter is how long to wait before the next request can pass; zero
	// when Allowed.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to a full quota.
	ResetAfter time.Duration
	// Window is the time in which Limit requests are replenished (the
	// RateLimit-Policy "w" parameter); zero when unknown.
	Window time.Duration
}

// Limiter is what Middleware needs: a decision for one request of key.
type Limiter interface {
	Allow(ctx context.Context, key string) (Decision, error)
}

// Rate is a distributed limit: Count requests per Period, with bursts of up to
// Burst (Burst 0 means Count).
type Rate struct {
	Count  int
	Period time.Duration
	Burst  int
}

func (r Rate) burst() int {
	if r.Burst > 0 {
		return r.Burst
	}
	return r.Count
}
