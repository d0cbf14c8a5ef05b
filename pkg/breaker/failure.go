package breaker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
)

// IsFailure says whether a call's outcome is evidence that the upstream is
// unhealthy: it could not be reached (connect refused, DNS, dial timeout), the
// connection broke (reset, EOF mid-response), it timed out, or it answered 502,
// 503 or 504. A 4xx is the client's problem and a cancellation is the
// caller's choice; counting either would let bad clients open the breaker for
// everyone. Errors of any other kind are not counted: they are more likely a
// local bug than a sick upstream.
func IsFailure(err error, status int) bool {
	if err == nil {
		switch status {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	if Cancelled(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) { // dial, read or write on the connection itself
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// Cancelled reports whether err comes from the caller giving up
// (context.Canceled), as opposed to a deadline or the upstream.
func Cancelled(err error) bool {
	return errors.Is(err, context.Canceled)
}

// deadlineSlack: an upstream that honours a propagated deadline
// (pkg/deadline) answers its 504 slightly before the caller's own deadline,
// which the header carries in whole milliseconds, truncated. The gateway
// allows the same.
const deadlineSlack = 5 * time.Millisecond

// classify is Guard's verdict on one call made under the caller's ctx.
func classify(ctx context.Context, err error, status int) Outcome {
	switch {
	case Cancelled(err):
		return Ignored
	case errors.Is(err, deadline.ErrExpired):
		// deadline.Transport did not send the call: whoever's deadline it
		// was, the time went elsewhere and the upstream was not asked.
		return Ignored
	case callerGaveUp(ctx, err, status):
		return Ignored
	case IsFailure(err, status):
		return Failure
	default:
		return Success
	}
}

// callerGaveUp reports whether the caller, not the upstream, ended a call
// that failed (an error or a 504): it went away (ctx cancelled), or the
// deadline it sent (deadline.Caller) had passed or was within deadlineSlack
// of passing (an upstream handed it gives up with a 504 just before, and
// deadline.Transport does not send with under a millisecond left). Any
// other deadline is this process's own choice, as a route's maximum or a
// timeout put on the call alone is, and a call it ends stays a failure:
// those timeouts are how a hanging upstream opens the breaker.
func callerGaveUp(ctx context.Context, err error, status int) bool {
	if err == nil && status != http.StatusGatewayTimeout {
		return false
	}
	return deadline.GaveUp(ctx, deadlineSlack)
}
