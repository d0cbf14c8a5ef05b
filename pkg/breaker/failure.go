package breaker

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"
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
	case callerGaveUp(ctx, err, status):
		return Ignored
	case IsFailure(err, status):
		return Failure
	default:
		return Success
	}
}

// callerGaveUp reports whether the caller's own context, not the upstream,
// ended the call: it was cancelled or its deadline passed before the call
// ended in an error, or the upstream answered 504 at that deadline (it got
// it propagated and gave up with the caller). A timeout the caller put on
// the call alone (a context derived from ctx, or a client timeout) ends it
// while ctx still has time, and stays a failure.
func callerGaveUp(ctx context.Context, err error, status int) bool {
	if err == nil && status != http.StatusGatewayTimeout {
		return false
	}
	if ctx.Err() != nil {
		return true
	}
	dl, ok := ctx.Deadline()
	return ok && err == nil && time.Until(dl) < deadlineSlack
}
