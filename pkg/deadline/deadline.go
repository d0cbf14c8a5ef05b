// Package deadline carries a request's remaining time from hop to hop, so
// that work stops everywhere once the original caller has given up.
//
// The header X-Request-Timeout-Ms holds the sender's remaining time in whole
// milliseconds — a duration, not a timestamp, so hops need not agree on the
// wall clock. The receiving Middleware turns it into the request context's
// deadline (never later than the route's own maximum), and Inject/Transport
// write what is left of that deadline onto outgoing calls.
//
// The header must come in one field line. Two lines are one value "a, b"
// (RFC 9110 §5.3), which is no integer: a request carrying them is refused
// with 400, as the gateway refuses it (bad-timeout). Taking one of the lines
// let a caller that reaches a service directly, or through another proxy,
// send "50000" before its real, shorter budget and have the service work on
// past its deadline; taking the smallest would have served, but then a
// request the gateway refuses would run when sent around it, and a sender
// that writes the header twice has a bug worth seeing.
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
// More than one field line is refused (see the package doc), even lines that
// agree or are empty.
func Parse(h http.Header) (remaining time.Duration, ok bool, err error) {
	vs := h[Header] // h.Get(Header): Header is in canonical form already
	if len(vs) > 1 {
		return 0, true, errLines
	}
	var v string
	if len(vs) == 1 {
		v = vs[0]
	}
	if v == "" {
		return 0, false, nil
	}
	remaining, err = ParseValue(v)
	return remaining, true, err
}

// errLines is Parse's error for a header in more than one field line. Its
// text is the gateway's detail for the same refusal.
var errLines = errors.New("came in more than one field line")

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
//
// It copies the request to carry the new context. A server that copies each
// request anyway (pkg/server, for the span) derives the context in that copy
// with Derive and uses Enforce here instead.
func Middleware(routeMax time.Duration) gin.HandlerFunc {
	return func(c *gin.Context) {
		timeout, caller, err := requested(c.Request.Header, routeMax)
		if err != nil {
			refuse(c, err)
			return
		}
		if timeout <= 0 {
			c.Next()
			return
		}
		ctx, cancel := withDeadline(c.Request.Context(), time.Now().Add(timeout), caller, false)
		defer cancel()
		c.Request = c.Request.WithContext(ctx)
		c.Next()
		answerLate(c, ctx)
	}
}

// Derive returns parent with the deadline Middleware(routeMax) would give a
// request with headers h, for a server that makes the request's context in
// one step and copies the request once to carry it. When there is no
// deadline to set (no header and no routeMax), or the header is malformed or
// has no time left, it returns parent itself: Enforce, which must run before
// the handlers, answers those. Enforce also releases the deadline's timer as
// it returns, and Parent gives the outer layers parent back.
func Derive(parent context.Context, h http.Header, routeMax time.Duration) context.Context {
	timeout, caller, err := requested(h, routeMax)
	if err != nil || timeout <= 0 {
		return parent
	}
	ctx, _ := withDeadline(parent, time.Now().Add(timeout), caller, true)
	return ctx
}

// Enforce is the rest of Middleware for a request whose context Derive
// made: a malformed header is a 400 and one with no time left a 504, without
// running the handlers; a handler that has given no answer when the deadline
// passes gets a 504; and the deadline's context is cancelled as Enforce
// returns (its timer released), as Middleware cancels its own.
func Enforce() gin.HandlerFunc {
	return func(c *gin.Context) {
		rc, _ := c.Request.Context().Value(derivedKey{}).(*requestCtx)
		if rc == nil {
			// Derive set no deadline: the header is absent, or to be refused.
			// (One it set a deadline from was well formed and had time left.)
			if _, _, err := requested(c.Request.Header, 0); err != nil {
				refuse(c, err)
				return
			}
			c.Next()
			return
		}
		defer rc.cancel()
		c.Next()
		answerLate(c, rc)
	}
}

// Parent returns the context Derive derived ctx's deadline from, or ctx when
// Derive set none. A server's layers outside Enforce read from it whether
// the request's connection ended (its client went away): ctx's own Err says
// Canceled for every request with a deadline once Enforce has returned.
func Parent(ctx context.Context) context.Context {
	if rc, ok := ctx.Value(derivedKey{}).(*requestCtx); ok {
		return rc.parent
	}
	return ctx
}

// Release cancels the deadline Derive put on ctx, unless Enforce has already,
// and returns the context Derive derived it from (Parent's). It is for the
// outermost of a server's layers that run after Derive: one between Derive
// and Enforce may answer a request itself (pkg/server's 400 for a query it
// cannot decode), and that request's deadline was then never cancelled, its
// timer holding the request until the caller's deadline passed (net/http
// cancels its own request context once the handler returns, which hides
// that on a connection, not under a handler called directly).
func Release(ctx context.Context) context.Context {
	rc, ok := ctx.Value(derivedKey{}).(*requestCtx)
	if !ok {
		return ctx
	}
	if rc.Err() == nil { // Enforce's cancel has run for every request it saw
		rc.cancel()
	}
	return rc.parent
}

// requested reads h's header against routeMax: the timeout to give the
// request (0: none) and whether the header set it (caller), or why the
// request is refused: errNoTimeLeft, or Parse's error for a malformed one.
func requested(h http.Header, routeMax time.Duration) (timeout time.Duration, caller bool, err error) {
	remaining, ok, err := Parse(h)
	switch {
	case err != nil:
		return 0, false, err
	case ok && remaining <= 0:
		return 0, false, errNoTimeLeft
	case ok && (routeMax <= 0 || remaining < routeMax):
		return remaining, true, nil
	}
	return routeMax, false, nil
}

var errNoTimeLeft = errors.New("no time left")

// refuse answers a request that requested refused with err.
func refuse(c *gin.Context, err error) {
	if err == errNoTimeLeft {
		problem.Abort(c, http.StatusGatewayTimeout, "the caller's deadline had passed when the request arrived")
		return
	}
	problem.Abort(c, http.StatusBadRequest, "invalid "+Header, problem.FieldError{Field: Header, Detail: err.Error()})
}

// answerLate answers 504 when c's handlers gave no answer and ctx, the
// deadline's context, ended as that deadline passed.
func answerLate(c *gin.Context, ctx context.Context) {
	if unanswered(c) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		problem.Abort(c, http.StatusGatewayTimeout, "the request deadline passed before a response was ready")
	}
}

// withDeadline derives a context from parent that ends at dl, or earlier
// with parent. caller says the header set dl: a breaker must not count the
// end of that deadline against an upstream (Caller), while it must count
// the route's own maximum, which is this server's choice. An earlier
// deadline already on parent binds instead, and dl is then not the
// caller's; if an outer Middleware marked that one as the caller's, that
// mark still tells. derived (Derive) marks the context for Enforce and
// Parent. A context that is neither the caller's nor derived needs no node
// of its own.
func withDeadline(parent context.Context, dl time.Time, caller, derived bool) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithDeadline(parent, dl)
	if got, _ := ctx.Deadline(); !got.Equal(dl) {
		caller = false
	}
	if !caller && !derived {
		return ctx, cancel
	}
	return &requestCtx{Context: ctx, parent: parent, cancel: cancel, dl: dl, caller: caller, derived: derived}, cancel
}

// requestCtx is a request's deadline context (the standard library's, whose
// timer cancels the handlers' work, and everything derived from it, when the
// deadline passes) with what the layers around the handlers read about it,
// in one allocation: whether the caller set it (Caller), the context it was
// derived from (Parent) and its cancel func (Enforce). A value node per mark
// and the deadline boxed into one cost two allocations more.
type requestCtx struct {
	context.Context // context.WithDeadline(parent, dl)
	parent          context.Context
	cancel          context.CancelFunc
	dl              time.Time
	caller, derived bool
}

// Value answers callerKey when the caller set the deadline and derivedKey
// when Derive made it, and asks the deadline's context (whose cancellation
// the standard library finds through Value) for anything else.
func (c *requestCtx) Value(key any) any {
	switch key.(type) {
	case callerKey:
		if c.caller {
			return c
		}
	case derivedKey:
		if c.derived {
			return c
		}
	}
	return c.Context.Value(key)
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

type (
	callerKey  struct{}
	derivedKey struct{}
)

// Caller returns ctx's deadline and true when that deadline is the one the
// caller sent in the header (Middleware or Derive, where it was shorter than
// the route's maximum). It is false for the route's maximum and for a deadline
// this process set itself, such as a shorter timeout derived from the
// request's context: those are the process's own choices, and a call they
// end is evidence about the upstream, while one the caller's deadline ends
// is not.
func Caller(ctx context.Context) (time.Time, bool) {
	caller, ok := ctx.Value(callerKey{}).(*requestCtx)
	if !ok {
		return time.Time{}, false
	}
	dl, ok := ctx.Deadline()
	if !ok || !dl.Equal(caller.dl) { // detached (WithoutCancel) or a shorter one derived since
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
		// Every line, not Get's first: an empty first line hid a second
		// that went on as it came, a budget from nobody's deadline.
		if len(r.Header[Header]) == 0 {
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
