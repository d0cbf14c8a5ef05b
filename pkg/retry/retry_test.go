package retry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
)

// clock is a budget's clock in a test: it starts at the budget's origin
// and moves only when the test moves t.
type clock struct{ t time.Time }

func clockOf(b *Budget) *clock {
	c := &clock{t: b.origin}
	b.elapsed = func() time.Duration { return c.t.Sub(b.origin) }
	return c
}

func noSleep(p Policy) Policy {
	p.sleep = func(context.Context, time.Duration) error { return nil }
	return p
}

var errUpstream = errors.New("upstream 503")

func TestRetryBudgetExhaustedStopsRetries(t *testing.T) {
	b := NewBudget(0.2, 3, 10*time.Second) // floor: 3/s × 10s = 30 retries
	clk := clockOf(b)
	p := noSleep(Policy{Attempts: 3})

	calls := 0
	fail := func(context.Context) error { calls++; return errUpstream }

	// 100 requests against a dead upstream: the budget is 30 + 20% of 100 = 50
	// retries, far fewer than the 200 that 3 attempts each would make.
	exhausted := 0
	for range 100 {
		err := Do(context.Background(), p, b, fail)
		if !errors.Is(err, errUpstream) {
			t.Fatalf("lost the upstream error: %v", err)
		}
		if errors.Is(err, ErrBudgetExhausted) {
			exhausted++
		}
	}
	if retries := calls - 100; retries != 50 {
		t.Fatalf("%d retries, want the budget's 50", retries)
	}
	if exhausted == 0 {
		t.Fatal("no error reported ErrBudgetExhausted")
	}
	// Once exhausted, a request gets exactly one attempt.
	calls = 0
	_ = Do(context.Background(), p, b, fail)
	if calls != 1 {
		t.Fatalf("exhausted budget still allowed %d attempts", calls)
	}
	// A NaN ratio (GATEWAY_RETRY_BUDGET=NaN parses as a float) is no ratio: the floor alone, not every retry.
	nan := NewBudget(math.NaN(), 0, 10*time.Second)
	for range 100 {
		nan.Request()
	}
	if nan.Withdraw() {
		t.Fatal("a budget with a NaN ratio and no floor allowed a retry")
	}
	// The window slides: after it passes, retries are possible again.
	clk.t = clk.t.Add(11 * time.Second)
	calls = 0
	_ = Do(context.Background(), p, b, fail)
	if calls != 3 {
		t.Fatalf("after the window passed: %d attempts, want 3", calls)
	}
}

func TestRetryStopsOnSuccessAndPermanentErrors(t *testing.T) {
	p := noSleep(Policy{Attempts: 5})
	calls := 0
	err := Do(context.Background(), p, nil, func(context.Context) error {
		calls++
		if calls < 3 {
			return errUpstream
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("err %v after %d calls, want success on the 3rd", err, calls)
	}
	calls = 0
	err = Do(context.Background(), p, nil, func(context.Context) error { calls++; return Permanent(errUpstream) })
	if !errors.Is(err, errUpstream) || calls != 1 {
		t.Fatalf("permanent error retried: %d calls, %v", calls, err)
	}
	calls = 0
	_ = Do(context.Background(), p, nil, func(context.Context) error { calls++; return context.Canceled })
	if calls != 1 {
		t.Fatalf("cancellation retried %d times", calls)
	}
}

func TestRetryDoesNotOutliveTheDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	calls := 0
	// The first backoff can be up to 1h: it cannot fit the 20ms deadline, so
	// Do returns at once instead of sleeping into the deadline.
	err := Do(ctx, Policy{Attempts: 3, Base: time.Hour, Max: time.Hour}, nil,
		func(context.Context) error { calls++; return errUpstream })
	if calls != 1 || !errors.Is(err, errUpstream) {
		t.Fatalf("%d calls, err %v", calls, err)
	}
}

func TestBackoffIsFullJitterUnderCap(t *testing.T) {
	p := Policy{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	for n, ceil := range map[int]time.Duration{1: 10, 2: 20, 3: 40, 4: 50, 10: 50} {
		ceil *= time.Millisecond
		var maxSeen time.Duration
		for range 2000 {
			d := p.Backoff(n)
			if d < 0 || d >= ceil {
				t.Fatalf("retry %d: backoff %v outside [0, %v)", n, d, ceil)
			}
			maxSeen = max(maxSeen, d)
		}
		if maxSeen < ceil*8/10 {
			t.Fatalf("retry %d: largest of 2000 draws %v, expected near %v (not full jitter)", n, maxSeen, ceil)
		}
	}
	// A cap near the largest Duration: doubling the bound used to overflow, and rand.Int64N panicked on it.
	huge := Policy{Max: math.MaxInt64}
	for n := 1; n <= 100; n++ {
		if d := huge.Backoff(n); d < 0 {
			t.Fatalf("retry %d under a %v cap: backoff %v", n, huge.Max, d)
		}
	}
}

func TestIdempotent(t *testing.T) {
	for _, tc := range []struct {
		method, key string
		body        bool
		want        bool
	}{
		{http.MethodGet, "", false, true},
		{http.MethodHead, "", false, true},
		{http.MethodOptions, "", false, true},
		{http.MethodPost, "", true, false},
		{http.MethodPost, "abc", true, true},
		{http.MethodPut, "", true, false},
		{http.MethodDelete, "", false, false},
		{http.MethodDelete, "k1", false, true},
	} {
		var body io.Reader
		if tc.body {
			body = strings.NewReader("{}") // http.NewRequest sets GetBody for it
		}
		r, err := http.NewRequest(tc.method, "http://x/", body)
		if err != nil {
			t.Fatal(err)
		}
		if tc.key != "" {
			r.Header.Set("Idempotency-Key", tc.key)
		}
		if got := Idempotent(r); got != tc.want {
			t.Errorf("%s key=%q: Idempotent = %v, want %v", tc.method, tc.key, got, tc.want)
		}
	}
	r, _ := http.NewRequest(http.MethodPost, "/x", http.NoBody)
	r.Header.Set("Idempotency-Key", "k")
	r.Body, r.GetBody = io.NopCloser(strings.NewReader("x")), nil
	if Idempotent(r) {
		t.Error("a body that cannot be replayed must not be retried")
	}
}

// Requests counted from many goroutines at once are all counted (the
// lock-free bucket's CAS loses none), and only within the window.
func TestBudgetCountsConcurrentRequests(t *testing.T) {
	b := NewBudget(0.5, 0, 10*time.Second)
	clk := clockOf(b)
	done := make(chan struct{})
	for range 8 {
		go func() {
			for range 1000 {
				b.RequestAt(clk.t)
			}
			done <- struct{}{}
		}()
	}
	for range 8 {
		<-done
	}
	// 8000 requests at 50%: 4000 retries, then no more.
	n := 0
	for b.Withdraw() {
		n++
	}
	if n != 4000 {
		t.Fatalf("%d retries withdrawn, want 4000 (half of 8000 requests)", n)
	}
	clk.t = clk.t.Add(10 * time.Second) // every bucket left the window
	if b.Withdraw() {
		t.Fatal("a retry was allowed on requests older than the window")
	}
}

// BenchmarkBudgetRequest is the per-request cost of the budget, from both
// cores at once as the gateway's two event loops call it.
func BenchmarkBudgetRequest(b *testing.B) {
	bud := NewBudget(0.2, 3, 10*time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bud.Request()
		}
	})
}

// TestRetryEndedByItsContextSaysSo: a Do that ctx ends before its next
// attempt (the client went away during the backoff, or between an attempt
// and the next) returned only the last attempt's error, a refused
// connection or an upstream 503, so its caller answered a server error
// (deadline.Abort does not recognise it) for a request whose client had
// left. The error must carry ctx's as well as the last attempt's.
func TestRetryEndedByItsContextSaysSo(t *testing.T) {
	t.Run("during the backoff", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		calls := 0
		// The backoff is up to an hour: the cancellation ends it.
		p := Policy{Attempts: 3, Base: time.Hour, Max: time.Hour}
		err := Do(ctx, p, nil, func(context.Context) error {
			if calls++; calls == 1 {
				go cancel()
			}
			return errUpstream
		})
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errUpstream) {
			t.Fatalf("err %v, want both the cancellation and the upstream's error", err)
		}
	})
	t.Run("before the next attempt", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		err := Do(ctx, noSleep(Policy{Attempts: 3}), nil, func(context.Context) error {
			cancel()
			return errUpstream
		})
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errUpstream) {
			t.Fatalf("err %v, want both the cancellation and the upstream's error", err)
		}
	})
	t.Run("attempts spent", func(t *testing.T) {
		err := Do(context.Background(), noSleep(Policy{Attempts: 2}), nil, func(context.Context) error { return errUpstream })
		if err != errUpstream {
			t.Fatalf("err %v, want the upstream's error as it was", err)
		}
	})
}

// TestRetryAbandonedInItsBackoffIsNotCharged: the budget caps the retries
// sent to an upstream. Do withdrew one before its backoff and kept it when
// ctx ended the backoff, so every client that gave up while waiting spent
// a retry nobody sent, and the retries of the clients still waiting were
// refused in its place.
func TestRetryAbandonedInItsBackoffIsNotCharged(t *testing.T) {
	b := NewBudget(0, 1, time.Second) // one retry in the window
	clockOf(b)                        // its clock stands still: both calls fall in one window

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gone := Policy{Attempts: 2, Base: time.Hour, Max: time.Hour}
	gone.sleep = func(ctx context.Context, d time.Duration) error {
		cancel() // the client leaves during the (up to an hour's) backoff
		return sleep(ctx, d)
	}
	calls := 0
	err := Do(ctx, gone, b, func(context.Context) error { calls++; return errUpstream })
	if calls != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("%d calls, err %v: want one attempt ended by the cancellation", calls, err)
	}

	calls = 0
	err = Do(context.Background(), noSleep(Policy{Attempts: 2}), b, func(context.Context) error {
		if calls++; calls == 1 {
			return errUpstream
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("%d calls, err %v: the retry nobody sent was charged to the budget", calls, err)
	}
}

// A retry Take allowed and Refund gave back is free again for another
// caller (the gateway takes one before it knows whether an upstream can
// take it); one whose step has left the window gives nothing back to the
// steps after it.
func TestRefundGivesTheRetryBack(t *testing.T) {
	b := NewBudget(0, 1, time.Second) // one retry in the window
	clk := clockOf(b)

	w, ok := b.Take()
	if !ok || b.Withdraw() {
		t.Fatalf("take %v, then a second retry allowed: want one retry in the window", ok)
	}
	w.Refund()
	stale, ok := b.Take()
	if !ok {
		t.Fatal("a refunded retry is still charged")
	}

	clk.t = clk.t.Add(time.Second) // the window moved past it
	w, ok = b.Take()
	if !ok {
		t.Fatal("no retry in a fresh window")
	}
	stale.Refund() // charged to a step out of the window: nothing to give back
	if b.Withdraw() {
		t.Fatal("refunding a retry of an earlier window freed one in this window")
	}
	w.Refund()
	Withdrawal{}.Refund() // a zero Withdrawal refunds nothing, and does not panic
	if !b.Withdraw() || b.Withdraw() {
		t.Fatal("after its refund the window should allow exactly one retry")
	}
}

// TestRetryNotSentForLackOfTimeIsNotCharged: behind retry.Transport,
// deadline.Transport refuses to send an attempt with under a millisecond
// left (ErrExpired). A backoff that used up the time left made the retry one
// the upstream never got, and Do kept it charged to the budget; and the
// caller got that ErrExpired instead of the upstream's 503, the answer it
// gets when Do sees beforehand that a retry cannot finish in time.
func TestRetryNotSentForLackOfTimeIsNotCharged(t *testing.T) {
	b := NewBudget(0, 1, time.Second) // one retry in the window
	clockOf(b)                        // its clock stands still: both calls fall in one window

	var sent atomic.Int32
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent.Add(1)
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Body: io.NopCloser(strings.NewReader("warming up")), Request: r}, nil
	})
	p := Policy{Attempts: 2, Base: time.Nanosecond}
	p.sleep = func(ctx context.Context, _ time.Duration) error {
		dl, _ := ctx.Deadline()
		time.Sleep(time.Until(dl) - 500*time.Microsecond) // the backoff leaves under a millisecond
		return nil
	}
	client := &http.Client{Transport: Transport(deadline.Transport(up), p, b)}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.invalid/", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%v after %d sent: want the upstream's 503, the retry refused by deadline.Transport", err, sent.Load())
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || string(body) != "warming up" || sent.Load() != 1 {
		t.Fatalf("status %d body %q after %d sent: want the 503 with its body, one attempt sent", resp.StatusCode, body, sent.Load())
	}
	if !b.Withdraw() {
		t.Fatal("the retry deadline.Transport did not send was charged to the budget")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRetryNotSentRefundsItsOwnChargeOnce: the refund for a retry fn
// marks Unsent is that retry's charge, once, whether the mark is outside
// or inside an http.Client's *url.Error, a %w or an errors.Join; an attempt
// that was no retry (the first) refunds nothing, which would hand back
// another caller's retry.
func TestRetryNotSentRefundsItsOwnChargeOnce(t *testing.T) {
	expired := Unsent(deadline.ErrExpired)
	wrapped := &url.Error{Op: "Get", URL: "http://upstream.invalid/", Err: expired}
	for _, tc := range []struct {
		name    string
		expired int   // the attempt that comes back expired
		err     error // as it comes back
	}{
		{"first attempt", 1, expired},
		{"first attempt, in a url.Error", 1, wrapped},
		{"retry", 2, expired},
		{"retry, in a url.Error", 2, wrapped},
		{"retry, under fmt.Errorf's %w", 2, fmt.Errorf("get stock: %w", expired)},
		{"retry, joined", 2, errors.Join(errors.New("close body"), expired)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(0, 2, time.Second) // two retries in the window
			clockOf(b)                        // one window for everything below
			if !b.Withdraw() {                // another caller's retry, sent
				t.Fatal("the budget refused the first of its two retries")
			}
			attempt := 0
			err := Do(context.Background(), noSleep(Policy{Attempts: 3}), b, func(context.Context) error {
				if attempt++; attempt == tc.expired {
					return tc.err
				}
				return errUpstream
			})
			if !errors.Is(err, deadline.ErrExpired) || attempt != tc.expired {
				t.Fatalf("err %v after %d attempts: want ErrExpired after %d", err, attempt, tc.expired)
			}
			// Left: one retry (this Do's, refunded; or never taken). None left
			// is no refund; two is the other caller's handed back too.
			if !b.Withdraw() {
				t.Fatal("no retry left: this Do's unsent retry stayed charged")
			}
			if b.Withdraw() {
				t.Fatal("two retries left: the other caller's retry was refunded too")
			}
		})
	}
}

// TestRetryThatSentACallStaysCharged: an attempt of several calls whose
// first call reached the upstream and whose later one deadline.Transport
// refused (a bare ErrExpired) was a retry the upstream paid for. Do
// refunded every ErrExpired, so such retries passed the budget's cap.
func TestRetryThatSentACallStaysCharged(t *testing.T) {
	b := NewBudget(0, 1, time.Second) // one retry in the window
	clockOf(b)                        // one window for everything below
	attempt, sent := 0, 0
	err := Do(context.Background(), noSleep(Policy{Attempts: 3}), b, func(context.Context) error {
		if attempt++; attempt == 1 {
			sent++
			return errUpstream
		}
		sent++                     // the retry's first call is sent...
		return deadline.ErrExpired // ...and its second finds no time left
	})
	if !errors.Is(err, deadline.ErrExpired) || attempt != 2 || sent != 2 {
		t.Fatalf("err %v after %d attempts, %d calls sent: want ErrExpired after 2 attempts", err, attempt, sent)
	}
	if b.Withdraw() {
		t.Fatal("the window's one retry was sent, yet the budget allows another: its charge was refunded")
	}
}

// TestTransportLeavesItsCallersChargeAlone: Unsent is what fn tells its own
// Do. Transport's RoundTrip passed its mark on to its caller, so a Do whose
// fn sent one call and then had another refused through Transport for lack
// of time refunded a retry the upstream paid for, as a bare ErrExpired once
// did (TestRetryThatSentACallStaysCharged).
func TestTransportLeavesItsCallersChargeAlone(t *testing.T) {
	b := NewBudget(0, 1, time.Second) // one retry in the window
	clockOf(b)                        // one window for everything below
	sent := 0
	up := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent++
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})
	through := Transport(deadline.Transport(up), Policy{}, nil)
	attempt := 0
	err := Do(context.Background(), noSleep(Policy{Attempts: 3}), b, func(ctx context.Context) error {
		if attempt++; attempt == 1 {
			return errUpstream
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.invalid/first", nil)
		if _, err := up.RoundTrip(req); err != nil { // the retry's first call is sent...
			return err
		}
		late, cancel := context.WithDeadline(ctx, time.Now()) // ...and its second finds no time left
		defer cancel()
		req, _ = http.NewRequestWithContext(late, http.MethodGet, "http://upstream.invalid/second", nil)
		_, err := through.RoundTrip(req)
		return err
	})
	if !errors.Is(err, deadline.ErrExpired) || attempt != 2 || sent != 1 {
		t.Fatalf("err %v after %d attempts, %d calls sent: want ErrExpired after 2 attempts, 1 sent", err, attempt, sent)
	}
	if b.Withdraw() {
		t.Fatal("the window's one retry sent a call, yet the budget allows another: Transport's mark refunded it")
	}
}

// TestMarkingNoErrorIsSuccess: Permanent(nil) and Unsent(nil) were errors
// wrapping nothing, so a fn that marked whatever its call returned had a
// success retried (the call sent again) and handed its caller an error
// whose Error panicked.
func TestMarkingNoErrorIsSuccess(t *testing.T) {
	for name, mark := range map[string]func(error) error{"Permanent": Permanent, "Unsent": Unsent} {
		calls := 0
		err := Do(context.Background(), noSleep(Policy{Attempts: 3}), nil, func(context.Context) error {
			calls++
			return mark(nil)
		})
		if err != nil || calls != 1 {
			t.Errorf("%s(nil): %d calls, err %T, want one call and nil", name, calls, err)
		}
	}
}
