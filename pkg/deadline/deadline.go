// Package deadline carries a request's remaining time from hop to hop, so
// that work stops everywhere once the original caller has given up.
//
// The header X-Request-Timeout-Ms holds the sender's remaining time in whole
// milliseconds — a duration, not a timestamp, so hops need not agree on the
// wall clock. The receiving Middleware turns it into the request context's
// deadline (never later than the route's own maximum), and Inject/Transport
// write what is left of that deadline onto outgoing calls.
package deadline

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// Header is the name of the remaining-time header.
const Header = "X-Request-Timeout-Ms"

// StatusClientClosedRequest is the status Abort gives a request whose client went away (nginx's 499, "client closed
// request"): no one reads it, but metrics and logs tell it from the server's own failures, which a 503 did not.
const StatusClientClosedRequest = 499

// ErrExpired is returned by Transport when no time is left to send a call.
var ErrExpired = fmt.Errorf("deadline: no time left for the call: %w", context.DeadlineExceeded)

// Parse reads the header. ok is false when it is absent; an error names what
// is wrong with a present one. A value of 0 or less means "already expired".
func Parse(h http.Header) (remaining time.Duration, ok bool, err error) {
	v := h.Get(Header)
	if v == "" {
		return 0, false, nil
	}
	remaining, err = ParseValue(v)
	return remaining, true, err
}

// ParseValue reads a present header's value v as Parse does, for callers
// that hold it outside an http.Header (the gateway's fasthttp requests), so
// every binary reads the caller's deadline the same way.
func ParseValue(v string) (time.Duration, error) {
	ms, err := strconv.ParseInt(v, 10, 64)
	// A well-formed number past int64 is absurdly large (or small), not malformed: ParseInt gives the nearest int64
	// with ErrRange, clamped below like any large value. ParseInt reports the overflow at the digit where it happens,
	// before it sees the rest, so the syntax is checked here.
	if err != nil && !(errors.Is(err, strconv.ErrRange) && integer(v)) {
		return 0, errors.New("must be an integer number of milliseconds")
	}
	// Clamped before the conversion to nanoseconds, which would overflow: a large negative value wrapped around to a
	// positive duration and an expired request ran. Absurdly large is harmless: the route max caps it.
	ms = min(max(ms, 0), int64(time.Duration(1<<62)/time.Millisecond))
	return time.Duration(ms) * time.Millisecond, nil
}

// integer reports whether s is what ParseInt accepts in base 10: an
// optional sign and one or more decimal digits.
func integer(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Middleware gives each request a context deadline: the caller's remaining
// time from the header, capped by routeMax (the most this route may take), or routeMax
// alone when the header is absent; routeMax ≤ 0 means no cap. A request that
// arrives already expired is answered 504 problem+json without running the
// handler; a malformed header is a 400 naming it. If the handler has given
// no answer when its deadline passes, the response is a 504 too.
func Middleware(routeMax time.Duration) gin.HandlerFunc {
	return func(c *gin.Context) {
		timeout, caller := routeMax, false
		remaining, ok, err := Parse(c.Request.Header)
		switch {
		case err != nil:
			problem.Abort(c, http.StatusBadRequest, "invalid "+Header,
				problem.FieldError{Field: Header, Detail: err.Error()})
			return
		case ok && remaining <= 0:
			problem.Abort(c, http.StatusGatewayTimeout, "the caller's deadline had passed when the request arrived")
			return
		case ok && (routeMax <= 0 || remaining < routeMax):
			timeout, caller = remaining, true
		}
		if timeout <= 0 {
			c.Next()
			return
		}
		dl := time.Now().Add(timeout)
		ctx, cancel := context.WithDeadline(c.Request.Context(), dl)
		defer cancel()
		if got, _ := ctx.Deadline(); caller && got.Equal(dl) {
			// The header set it: a breaker must not count the end of this
			// deadline against an upstream (Caller), while it must count the
			// route's own maximum, which is this server's choice. An earlier
			// deadline already on the request binds instead; if an outer
			// Middleware marked it as the caller's, that mark still tells.
			ctx = context.WithValue(ctx, callerKey{}, dl)
		}
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		if unanswered(c) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			problem.Abort(c, http.StatusGatewayTimeout, "the request deadline passed before a response was ready")
		}
	}
}

// unanswered reports whether c's handlers gave no answer: nothing written
// and gin's default status still in place. A status set alone (a 204, a 202)
// is an answer, which gin sends as the chain ends: a handler that finished
// its work after the deadline (a logout revokes the session on a context
// detached from the request's) must not have its success turned into a 504.
// The trade-off: a bare c.Status(200) cannot be told from no answer.
func unanswered(c *gin.Context) bool {
	return !c.Writer.Written() && c.Writer.Status() == http.StatusOK
}

type callerKey struct{}

// Caller returns ctx's deadline and true when that deadline is the one the
// caller sent in the header (Middleware, where it was shorter than the
// route's maximum). It is false for the route's maximum and for a deadline
// this process set itself, such as a shorter timeout derived from the
// request's context: those are the process's own choices, and a call they
// end is evidence about the upstream, while one the caller's deadline ends
// is not.
func Caller(ctx context.Context) (time.Time, bool) {
	caller, ok := ctx.Value(callerKey{}).(time.Time)
	if !ok {
		return time.Time{}, false
	}
	dl, ok := ctx.Deadline()
	if !ok || !dl.Equal(caller) { // detached (WithoutCancel) or a shorter one derived since
		return time.Time{}, false
	}
	return dl, true
}

// GaveUp reports whether ctx's caller, not this process, is ending the work
// done for it: the caller went away (ctx cancelled), or the deadline it sent
// (Caller) has passed or is less than slack away. Work ended that way is no
// evidence about an upstream's health or this server's capacity; a deadline
// of this process's own (a route's maximum, a timeout on one call) passing is.
func GaveUp(ctx context.Context, slack time.Duration) bool {
	if errors.Is(ctx.Err(), context.Canceled) {
		return true
	}
	dl, ok := Caller(ctx)
	return ok && time.Until(dl) < slack
}

// Abort answers a request whose work err ended, when err is a context error,
// and reports whether it was one. The answer is:
//   - StatusClientClosedRequest (499) with no body when the request's context
//     was cancelled: its client went away (net/http cancels it when the
//     connection closes), so nothing will read an answer, and a 503 made the
//     client's leaving a server error in metrics and logs. The status is set,
//     not sent: it goes out as the chain ends, so an outer layer that knows
//     better (pkg/server, when its own shutdown closed the connection) can
//     still replace it;
//   - a 504 problem when the request's own deadline has passed (the caller's,
//     from the header, or the route's budget), or has under a millisecond
//     left, the least Transport sends a call with (its ErrExpired is that
//     deadline): a gateway that shortened the deadline for its client does not
//     count a 504 against this upstream, as it would a 503;
//   - otherwise (an inner timeout fired while the request still had time,
//     which is this server's own doing) a 503 problem.
//
// An I/O timeout (os.ErrDeadlineExceeded) counts as a context error once the
// request's context has ended, or its deadline has (all but) passed: client
// libraries bound a call by setting the connection's deadline when the
// context ends, or to the context's deadline itself (go-redis), and report
// the I/O's error, not the context's (pgx's "write failed: ... i/o
// timeout"), which was a 500. In the second case the I/O times out at the
// deadline, usually before the context's own timer has ended it.
func Abort(c *gin.Context, err error) bool {
	ctx := c.Request.Context()
	dl, ok := ctx.Deadline()
	if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) &&
		!(errors.Is(err, os.ErrDeadlineExceeded) && (ctx.Err() != nil || ok && expired(dl))) {
		return false
	}
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		c.Status(StatusClientClosedRequest)
		c.Abort()
	case errors.Is(ctx.Err(), context.DeadlineExceeded) || ctx.Err() == nil && ok && expired(dl):
		problem.Abort(c, http.StatusGatewayTimeout, "the request deadline passed before a response was ready")
	default:
		problem.Abort(c, http.StatusServiceUnavailable, "the request ran out of time")
	}
	return true
}

// Inject writes ctx's remaining time into h, or removes the header when ctx
// has no deadline (a stale value from a copied request must not leak on).
// An expired context is written as 0, which the receiver answers with 504.
func Inject(ctx context.Context, h http.Header) {
	dl, ok := ctx.Deadline()
	if !ok {
		h.Del(Header)
		return
	}
	ms := time.Until(dl).Milliseconds()
	h.Set(Header, strconv.FormatInt(max(0, ms), 10))
}

// Transport sends every request with its context's remaining time, and does
// not send at all (returning ErrExpired) when none is left: a downstream call
// the caller can no longer use is pure waste.
func Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return transport{rt}
}

type transport struct{ next http.RoundTripper }

// expired reports whether dl leaves no time to send a call with: under a
// millisecond, which the header (whole milliseconds) cannot carry.
func expired(dl time.Time) bool { return time.Until(dl) < time.Millisecond }

func (t transport) RoundTrip(r *http.Request) (*http.Response, error) {
	ctx := r.Context()
	dl, ok := ctx.Deadline()
	if !ok {
		if r.Header.Get(Header) == "" {
			return t.next.RoundTrip(r)
		}
	} else if expired(dl) {
		if r.Body != nil {
			_ = r.Body.Close() // RoundTripper contract: the body is ours to close
		}
		return nil, ErrExpired
	}
	// RoundTripper contract: never modify the caller's request.
	out := new(http.Request)
	*out = *r
	out.Header = r.Header.Clone()
	Inject(ctx, out.Header)
	return t.next.RoundTrip(out)
}
