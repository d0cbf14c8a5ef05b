// Package retry repeats a failed call when doing so is safe and cheap for the
// system: only idempotent requests, with exponential backoff and full jitter
// between attempts, and only while a retry budget says retries are a small
// share of traffic. The budget is what keeps retries from turning a
// struggling upstream into a dead one: when most calls fail, most retries
// are refused and the failure reaches the caller quickly.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
)

// ErrBudgetExhausted is joined to the last error when a retry was wanted but
// the budget refused it.
var ErrBudgetExhausted = errors.New("retry budget exhausted")

// Policy says how often and how patiently to retry. Zero values take the
// defaults shown.
type Policy struct {
	Attempts int           // total attempts including the first (3)
	Base     time.Duration // backoff before the first retry is drawn from [0, Base) (50ms)
	Max      time.Duration // cap on any one backoff (1s)
	// Retryable decides whether an error is worth another attempt (default:
	// anything but context cancellation, context deadline and Permanent).
	Retryable func(error) bool

	sleep func(ctx context.Context, d time.Duration) error // tests skip the waiting
}

// Permanent marks err as not worth retrying under the default Retryable.
// Permanent(nil) is nil, as Unsent(nil) is: a fn that marks whatever its
// call returned must not turn a success into an error.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// Unsent marks err as an attempt that reached no upstream (deadline.Transport
// refused it for lack of time, say): Do gives back the retry it was charged
// as. Only fn can say so. A bare deadline.ErrExpired may come from a later
// call of an attempt whose earlier call was sent; that retry did cost the
// upstream, and refunding it let the window's retries pass the cap.
func Unsent(err error) error {
	if err == nil {
		return nil // a success stays one: wrapped, Do would retry it
	}
	return unsent{err}
}

type unsent struct{ error }

func (u unsent) Unwrap() error { return u.error }

func (p *Policy) defaults() {
	if p.Attempts <= 0 {
		p.Attempts = 3
	}
	if p.Base <= 0 {
		p.Base = 50 * time.Millisecond
	}
	if p.Max <= 0 {
		p.Max = time.Second
	}
	if p.Retryable == nil {
		p.Retryable = retryable
	}
	if p.sleep == nil {
		p.sleep = sleep
	}
}

func retryable(err error) bool {
	var perm permanent
	return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && !errors.As(err, &perm)
}

// Backoff is the full-jitter delay before retry n (1 for the first retry):
// uniform in [0, min(Max, Base·2^(n-1))). Full jitter spreads the retries of
// many clients that failed together, instead of sending them back in waves.
func (p Policy) Backoff(n int) time.Duration {
	p.defaults()
	ceil := p.Base
	for i := 1; i < n && ceil < p.Max; i++ {
		// Doubling past Max/2 could overflow (Max near 290 years), wrapping to a bound rand.Int64N panics on.
		ceil = min(ceil, p.Max/2) * 2
	}
	ceil = min(ceil, p.Max)
	return time.Duration(rand.Int64N(int64(ceil)))
}

// Do calls fn until it succeeds, returns an error Retryable refuses or
// deadline.ErrExpired (no time left to send it), runs out of attempts, ctx
// ends, or an attempt's answer asks for a longer wait than
// p.Max (Transport's Retry-After; a shorter one is waited at least). Every
// Do deposits one request into b and every retry withdraws one (given back
// if ctx ends its backoff, or if fn marks the attempt Unsent, as neither
// reached an upstream); a nil b means no budget. The
// error returned is fn's last, joined with ErrBudgetExhausted when the
// budget stopped the retries, or with ctx's error when ctx ended before the
// next attempt (see ended).
//
// Do knows nothing of the request: call it only for idempotent work
// (see Idempotent).
func Do(ctx context.Context, p Policy, b *Budget, fn func(ctx context.Context) error) error {
	p.defaults()
	if b != nil {
		b.Request()
	}
	var err error
	var charged Withdrawal // the retry this attempt was charged as, if it is one
	for attempt := 1; ; attempt++ {
		if err = fn(ctx); err == nil {
			return nil
		}
		if errors.As(err, new(unsent)) {
			// Kept, the charge was a retry the upstream never got, refused
			// to another caller.
			charged.Refund()
			charged = Withdrawal{}
		}
		if errors.Is(err, deadline.ErrExpired) {
			// The backoff used up the time left: no later attempt has more.
			return err
		}
		if attempt >= p.Attempts || !p.Retryable(err) {
			return err
		}
		if ctx.Err() != nil {
			return ended(ctx, err)
		}
		wait := p.Backoff(attempt)
		if d, ok := asked(err); ok {
			// The upstream said when to come back (Retry-After). Sooner is
			// against its wish; later than this policy ever waits, and its
			// answer is the result.
			if d > p.Max {
				return err
			}
			wait = max(wait, d)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= wait {
			return err // the retry could not finish in time; don't start it
		}
		// Withdrawn before the backoff, not after: a retry the budget
		// refuses should fail fast, not after waiting for nothing.
		charged = Withdrawal{}
		if b != nil {
			var ok bool
			if charged, ok = b.Take(); !ok {
				return fmt.Errorf("%w: %w", ErrBudgetExhausted, err)
			}
		}
		if serr := p.sleep(ctx, wait); serr != nil {
			charged.Refund() // the retry is not sent
			return ended(ctx, err)
		}
	}
}

// asked is the delay err says its upstream asked for before another
// attempt (Transport's statusError: an answer's Retry-After), if any.
func asked(err error) (time.Duration, bool) {
	var d interface{ retryAfter() (time.Duration, bool) }
	if errors.As(err, &d) {
		return d.retryAfter()
	}
	return 0, false
}

// ended is err, the last attempt's, for a Do that ctx ended before the next
// attempt: it wraps ctx's error too, unless err does already. Alone, a
// refused connection or an upstream's 503 made a client that went away
// during the backoff look like a server failure to the caller (which
// deadline.Abort answers 499 once it sees the cancellation).
func ended(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil || errors.Is(err, cerr) {
		return err
	}
	return fmt.Errorf("%w: %w", cerr, err)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Idempotent reports whether r may be sent twice without a second effect:
// GET, HEAD and OPTIONS, or any request carrying an Idempotency-Key that the
// service deduplicates on. PUT and DELETE are idempotent by RFC 9110 but only
// if the handler honours that, which this layer cannot know, so they need
// the key too. A request whose body cannot be replayed (no GetBody) is never
// retryable.
func Idempotent(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody && r.GetBody == nil {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return r.Header.Get("Idempotency-Key") != ""
}
