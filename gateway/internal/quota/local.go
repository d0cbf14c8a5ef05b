package quota

import "time"

// AllowLocal decides one request of key at now only if that needs no Redis
// call: a lease with tokens left, a denial Redis gave that still holds, or
// the local fallback while Redis is down. ok false means Allow must ask
// Redis; nothing was spent then. The event-loop transport calls it on the
// loop and hands the request to a goroutine only when it says false.
//
// now is the caller's clock reading (the gateway reads the clock once per
// request for every step that needs it): leases live a second and denials
// and the fallback's refill are in milliseconds at the finest, so a reading
// microseconds old decides the same.
//
// It never waits for a Redis round trip: while Allow refills key's lease it
// says false, and the request waits for that refill on a goroutine.
func (l *Lease) AllowLocal(key []byte, now time.Time) (d Decision, ok bool) {
	r := l.rate.Load()
	if r.Off() {
		return Decision{Allowed: true}, true
	}
	b := l.lockedLocal(key)
	if b == nil {
		return Decision{}, false
	}
	defer b.mu.Unlock()
	return l.local(b, r, l.at(now), r.window())
}

// lockedLocal is lockedBucket for AllowLocal: nil, and nothing locked, while
// Allow refills key's lease. (Its own function: a defer in the loop would
// be allocated on every call.)
func (l *Lease) lockedLocal(key []byte) *bucket {
	for {
		b := l.bucket(key)
		if !b.mu.TryLock() {
			if b.refilling.Load() {
				return nil
			}
			// Held for a local decision (nanoseconds), or by Allow in the
			// instant before or after its call: waiting is cheap either way.
			b.mu.Lock()
		}
		if !b.dead.Load() {
			return b
		}
		b.mu.Unlock() // swept since the lookup: see lockedBucket
	}
}

// local is the part of a decision made from b alone; b.mu is held.
func (l *Lease) local(b *bucket, r *Rate, now int64, window time.Duration) (Decision, bool) {
	if b.tokens > 0 && now < b.until {
		b.tokens--
		return Decision{Allowed: true, Limit: r.burst(), Remaining: b.remaining + b.tokens, ResetAfter: b.resetAfter, Window: window}, true
	}
	if now < b.denyUntil {
		return Decision{Limit: r.burst(), RetryAfter: time.Duration(b.denyUntil - now), ResetAfter: b.resetAfter, Window: window}, true
	}
	if down := l.downUntil.Load(); down != 0 && (now < down || l.probing.Load()) {
		// In the cool-down, or past it while another request probes
		// Redis (Allow): only the prober waits for Redis.
		return b.fallback(now, *r, l.replicas, window), true
	}
	return Decision{}, false
}
