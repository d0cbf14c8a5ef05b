package retry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/deadline"
)

// Transport retries idempotent requests (see Idempotent) whose attempt failed
// the way breaker.IsFailure defines — connect errors, resets, timeouts, 502,
// 503, 504 — within p and b. Other requests pass through untouched. When the
// retries run out on a 5xx the caller gets that last response, not an error,
// so a proxy can relay it; likewise when deadline.Transport below refuses to
// send the retry for lack of time. An answer's Retry-After is honoured: the retry
// waits at least that long, and a delay longer than p.Max ends the retries
// with that answer (see Do). Its errors are not marked Unsent, whatever its
// own attempts sent: a Do around the caller hears that from the caller.
func Transport(rt http.RoundTripper, p Policy, b *Budget) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	p.Retryable = func(err error) bool {
		var s statusError
		return errors.As(err, &s) || breaker.IsFailure(err, 0)
	}
	return &transport{next: rt, p: p, b: b}
}

type transport struct {
	next http.RoundTripper
	p    Policy
	b    *Budget
}

// statusError is a retryable answer's status, and the delay its
// Retry-After asked for, if any (see asked).
type statusError struct {
	code  int
	after time.Duration
	asked bool
}

func (s statusError) Error() string { return "upstream status " + strconv.Itoa(s.code) }

func (s statusError) retryAfter() (time.Duration, bool) { return s.after, s.asked }

// retryAfter reads res's Retry-After (RFC 9110 §10.2.3): delay-seconds or
// an HTTP-date; a date already past asks for no delay. False: there is
// none, or none that parses.
func retryAfter(res *http.Response) (time.Duration, bool) {
	v := res.Header.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(math.MaxInt64/time.Second))) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(0, time.Until(at)), true
	}
	return 0, false
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if !Idempotent(req) {
		if t.b != nil {
			t.b.Request() // it is still traffic the 20% is a share of
		}
		return t.next.RoundTrip(req)
	}
	var resp *http.Response
	attempt := 0
	err := Do(req.Context(), t.p, t.b, func(ctx context.Context) error {
		// prev is the retried 5xx, kept for the caller in case this retry
		// is not sent; one release left on its connection is freed first.
		prev := resp
		resp = nil
		if prev != nil {
			if _, held := prev.Body.(heldBody); held {
				_, _ = io.Copy(io.Discard, io.LimitReader(prev.Body, 64<<10))
				_ = prev.Body.Close()
				prev = nil
			}
		}
		attempt++
		r := req
		if attempt > 1 {
			r = req.Clone(ctx)
			if req.GetBody != nil {
				body, err := req.GetBody()
				if err != nil {
					return Permanent(err)
				}
				r.Body = body
			}
		}
		res, err := t.next.RoundTrip(r)
		if err != nil {
			if errors.Is(err, deadline.ErrExpired) {
				// Not sent: too little time was left (deadline.Transport
				// below). The last attempt is still the 5xx, which the
				// caller gets, as when Do sees that a retry cannot finish
				// in time; with the error alone the upstream's answer was
				// lost to a deadline that had not quite passed. This one
				// call was the attempt: its retry goes back to the budget.
				resp = prev
				return Unsent(err)
			}
			return err
		}
		resp = res
		if breaker.IsFailure(nil, res.StatusCode) {
			release(res)
			after, asked := retryAfter(res)
			return statusError{code: res.StatusCode, after: after, asked: asked}
		}
		return nil
	})
	if resp != nil {
		return resp, nil
	}
	if u, ok := err.(unsent); ok {
		// The mark was this Do's word from its fn. Passed on, it told a
		// Do around the caller that the caller's attempt sent nothing,
		// when another of its calls (or an earlier attempt here) may have.
		err = u.error
	}
	return nil, err
}

// errorBodyMax bounds the error answer release holds in memory.
const errorBodyMax = 64 << 10

// release reads a failed attempt's answer into memory and closes its body,
// so that its connection goes back to the pool for the backoff: left
// unread, it stayed busy until the next attempt, and while an upstream was
// in trouble every retrying request held a connection doing nothing, which
// made other requests to the host dial more (or queue behind
// MaxConnsPerHost). The answer keeps its bytes, for a caller that gets it
// as the last one. One larger than errorBodyMax (error answers are small),
// or whose reading failed, keeps what was read followed by the rest of its
// body, as it would have been.
func release(res *http.Response) {
	buf, err := io.ReadAll(io.LimitReader(res.Body, errorBodyMax+1))
	if err != nil || len(buf) > errorBodyMax {
		res.Body = heldBody{io.MultiReader(bytes.NewReader(buf), res.Body), res.Body}
		return
	}
	_ = res.Body.Close()
	res.Body = io.NopCloser(bytes.NewReader(buf))
}

// heldBody is a body partly read ahead: the bytes read, then the rest.
type heldBody struct {
	io.Reader
	io.Closer
}
