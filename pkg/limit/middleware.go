package limit

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// MiddlewareOption tunes Middleware.
type MiddlewareOption func(*mwOptions)

type mwOptions struct{ policy string }

// Policy names the quota in the RateLimit headers (default "default"), so a
// client facing several limits can tell which one it hit. The name goes out
// as a structured-field String, which holds printable ASCII only (RFC 9651
// §3.3.3): Middleware panics on any other name, a wiring mistake that would
// otherwise send a field every conforming client refuses.
func Policy(name string) MiddlewareOption { return func(o *mwOptions) { o.policy = name } }

// Middleware limits each request by the key that key returns (client IP,
// user id, ...). An empty key means the limit does not apply to this request
// (for example a per-user limit on an anonymous call), so chain a per-IP
// limit in front of it.
//
// Every decided response carries the IETF draft headers
// (draft-ietf-httpapi-ratelimit-headers, structured-field form):
//
//	RateLimit-Policy: "default";q=100;w=10
//	RateLimit: "default";r=42;t=3
//
// and a refused one is a 429 problem+json with Retry-After in whole seconds.
// If the limiter cannot decide at all the request is refused with 503:
// failing open would make the limit meaningless exactly when it is needed.
// A decision the request's caller ended (the client went away, or the
// deadline it sent passed: the Redis limit's only error) is answered as
// deadline.Abort answers it, 499 or 504: a 503 would count the caller's
// leaving as this server's failure in its metrics.
func Middleware(l Limiter, key func(*gin.Context) string, opts ...MiddlewareOption) gin.HandlerFunc {
	o := mwOptions{policy: "default"}
	for _, opt := range opts {
		opt(&o)
	}
	quoted := sfString(o.policy)
	return func(c *gin.Context) {
		k := key(c)
		if k == "" {
			c.Next()
			return
		}
		d, err := l.Allow(c.Request.Context(), k)
		if err != nil {
			_ = c.Error(err)
			if deadline.Abort(c, err) {
				return
			}
			problem.Abort(c, http.StatusServiceUnavailable, "rate limit could not be checked")
			return
		}
		h := c.Writer.Header()
		if d.Window > 0 {
			h.Set("RateLimit-Policy", quoted+";q="+strconv.Itoa(d.Limit)+";w="+strconv.Itoa(seconds(d.Window)))
		} else {
			h.Set("RateLimit-Policy", quoted+";q="+strconv.Itoa(d.Limit))
		}
		h.Set("RateLimit", quoted+";r="+strconv.Itoa(d.Remaining)+";t="+strconv.Itoa(seconds(d.ResetAfter)))
		if !d.Allowed {
			h.Set("Retry-After", strconv.Itoa(max(1, seconds(d.RetryAfter))))
			problem.Abort(c, http.StatusTooManyRequests, "rate limit "+o.policy+" exceeded; retry after the Retry-After delay")
			return
		}
		c.Next()
	}
}

// sfString is s as a structured-field String: in double quotes, with \ and "
// escaped by a backslash. It panics when s has a character outside printable
// ASCII, which a String cannot carry; strconv.Quote wrote those as Go escapes
// (\t, \x01, \u00fc) or raw UTF-8, neither of which a String parser accepts.
func sfString(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			panic(fmt.Sprintf("limit.Middleware: policy name %q: a RateLimit policy name is printable ASCII only", s))
		}
	}
	// Within printable ASCII strconv.Quote escapes exactly \ and ".
	return strconv.Quote(s)
}

// seconds rounds up: telling a client to come back too early only earns it
// another 429.
func seconds(d time.Duration) int {
	return int(math.Ceil(d.Seconds()))
}

// ConcurrencyMiddleware sheds load with 503 problem+json when a is full, and
// feeds each response's latency and 5xx status back into it. A 5xx or a
// deadline.Abort 499 of a request its caller ended (the client went away, or
// the deadline it sent passed: deadline.GaveUp) only frees its slot
// (Adaptive.Forget): a 499 counted as a healthy completion would grow the
// limit by calls that never got an answer. It may sit inside the deadline
// layer or outside it (see callerEnded).
//
// A handler that panics is a failure, and its slot is released all the same.
// The recovery further out answers it 500, which is counted as a failure
// when a handler writes it itself; a panic that nothing here sees written
// would otherwise read as the 200 gin assumes until something is written,
// and panics that come with an overload (a dependency timing out in a way
// the code did not expect) would grow the limit instead of shrinking it.
func ConcurrencyMiddleware(a *Adaptive) gin.HandlerFunc {
	return func(c *gin.Context) {
		t, ok := a.Admit()
		if !ok {
			c.Header("Retry-After", "1")
			problem.Abort(c, http.StatusServiceUnavailable, "server overloaded; concurrency limit reached")
			return
		}
		start := time.Now()
		outer := c.Request.Context()
		returned := false
		// Deferred so that a panic (or runtime.Goexit) further in still
		// releases the slot: returned is still false then.
		defer func() {
			status := c.Writer.Status()
			failed := !returned || status >= 500
			if (failed || status == deadline.StatusClientClosedRequest) && returned &&
				callerEnded(outer, c.Request.Context(), c.Request.Header) {
				// The caller's own doing (deadline.Abort's 499 or 504):
				// counted, clients that give up early would shrink the
				// limit for everyone.
				a.Forget(t)
				return
			}
			a.Done(t, time.Since(start), failed)
		}()
		c.Next()
		returned = true
	}
}

// callerEnded is deadline.GaveUp for a request whose context a deadline
// layer inside this one (deadline.Middleware) may have replaced, and then
// cancelled as it returned to release its timer. Read from out here that
// cancellation looked like the client leaving, and every 5xx answered
// before its deadline was forgotten: the limit never shrank on failures.
// So whether the client left is read from outer, the context this layer
// was handed (the same one when the deadline layer is outside, as
// pkg/server's is), and whether the caller's deadline passed from inner,
// the request's context now, which carries it. A request that arrived with
// no time left (header h) gets no such context: the deadline layer answers
// it 504 at once, and counted, clients sending spent deadlines would shrink
// the limit.
func callerEnded(outer, inner context.Context, h http.Header) bool {
	if deadline.GaveUp(outer, time.Millisecond) {
		return true
	}
	if dl, ok := deadline.Caller(inner); ok {
		return time.Until(dl) < time.Millisecond
	}
	remaining, ok, err := deadline.Parse(h)
	return ok && err == nil && remaining <= 0
}
