// Package limit decides whether a request may proceed now.
//
// Three limiters share one shape (Limiter.Allow returns a Decision):
//
//   - PerKey: token buckets per key (client IP, user id) held in this process,
//     cheap enough to sit in front of every request, with idle keys forgotten
//     so memory stays bounded no matter how many distinct clients appear.
//   - NewRedis: one GCRA limit shared by every replica, kept in Redis and timed
//     by Redis's own clock so replicas with skewed clocks still agree. When
//     Redis cannot be reached, or refuses the write (full under noeviction),
//     each replica enforces limit ÷ replicas locally: the platform degrades to
//     an approximately right limit, never to none.
//   - NewAdaptive: a concurrency limit that finds its own size (AIMD), for
//     protecting a service from overload rather than a client from itself.
//
// Middleware turns a Limiter into a gin handler answering 429 problem+json with
// Retry-After and the IETF RateLimit / RateLimit-Policy headers;
// ConcurrencyMiddleware puts an Adaptive in front of handlers, answering 503
// when it is full and feeding back each response's latency and whether it
// failed (a 5xx, or a panic; not a 5xx its caller caused by going away or by
// its own deadline passing).
package limit
