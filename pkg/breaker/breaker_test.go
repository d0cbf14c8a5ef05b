package breaker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

// testReader collects what the package meters. The provider is installed
// once, before any instrument exists: the global can be redirected only once.
var testReader = sdkmetric.NewManualReader()

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(testReader)))
	os.Exit(m.Run())
}

func newTest(t *testing.T, s Settings) (*Breaker, *clock) {
	t.Helper()
	clk := &clock{t: time.Unix(1_700_000_000, 0)}
	s.now = clk.now
	b := New(t.Name(), s)
	t.Cleanup(b.Close)
	return b, clk
}

func call(t *testing.T, b *Breaker, failed bool) {
	t.Helper()
	done, err := b.Allow()
	if err != nil {
		t.Fatalf("Allow in state %v: %v", b.State(), err)
	}
	done(failed)
}

func TestBreakerFullCycle(t *testing.T) {
	var transitions []string
	b, clk := newTest(t, Settings{
		MinRequests: 10, FailureRatio: 0.5,
		OpenBase: 100 * time.Millisecond, OpenMax: time.Second, HalfOpenTrials: 2,
		OnStateChange: func(_ string, from, to State) { transitions = append(transitions, from.String()+">"+to.String()) },
	})
	b.s.Jitter = 0 // exact open periods for this test

	// Below the minimum request count even 100% failures do not trip.
	for range 9 {
		call(t, b, true)
	}
	if b.State() != Closed {
		t.Fatalf("tripped on 9 calls with MinRequests 10")
	}
	// Tenth completed call, 10/10 failed: trips.
	call(t, b, true)
	if b.State() != Open {
		t.Fatalf("state %v after 10/10 failures, want open", b.State())
	}
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow while open: %v, want ErrOpen", err)
	}

	clk.advance(99 * time.Millisecond)
	if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
		t.Fatalf("Allow before the open period ended: %v", err)
	}
	clk.advance(time.Millisecond)

	// Half-open: exactly HalfOpenTrials calls get through.
	r1, err := b.Guard(context.Background())
	if err != nil {
		t.Fatalf("first trial: %v", err)
	}
	if b.State() != HalfOpen {
		t.Fatalf("state %v, want half-open", b.State())
	}
	r2, err := b.Guard(context.Background())
	if err != nil {
		t.Fatalf("second trial: %v", err)
	}
	if _, err := b.Guard(context.Background()); !errors.Is(err, ErrTooManyTrials) {
		t.Fatalf("third concurrent trial: %v, want ErrTooManyTrials", err)
	}
	// A cancelled trial proves nothing: its slot is handed back uncounted.
	r1(fmt.Errorf("client left: %w", context.Canceled), 0)
	if b.State() != HalfOpen {
		t.Fatalf("cancellation changed state to %v", b.State())
	}
	r3, err := b.Guard(context.Background())
	if err != nil {
		t.Fatalf("trial after a cancelled one: %v", err)
	}
	r2(nil, http.StatusOK)
	if b.State() != HalfOpen {
		t.Fatalf("closed after 1 of 2 trials")
	}
	r3(nil, http.StatusNotFound) // a 4xx is the upstream working
	if b.State() != Closed {
		t.Fatalf("state %v after 2 successful trials, want closed", b.State())
	}
	want := []string{"closed>open", "open>half-open", "half-open>closed"}
	if fmt.Sprint(transitions) != fmt.Sprint(want) {
		t.Fatalf("transitions %v, want %v", transitions, want)
	}
}

func TestBreakerOpenPeriodBacksOff(t *testing.T) {
	b, clk := newTest(t, Settings{MinRequests: 1, OpenBase: 100 * time.Millisecond, OpenMax: 300 * time.Millisecond, HalfOpenTrials: 1})
	b.s.Jitter = 0
	call(t, b, true) // trip 1
	// Each failed trial re-opens for twice as long, capped at OpenMax.
	for trip, open := range []time.Duration{100, 200, 300, 300} {
		open *= time.Millisecond
		clk.advance(open - time.Millisecond)
		if _, err := b.Allow(); !errors.Is(err, ErrOpen) {
			t.Fatalf("trip %d: admitted before %v: %v", trip+1, open, err)
		}
		clk.advance(time.Millisecond)
		call(t, b, trip < 3) // trips 1-3: the trial fails; trip 4: it succeeds
	}
	if b.State() != Closed {
		t.Fatalf("state %v after a successful trial, want closed", b.State())
	}
	// Closing resets the backoff: the next trip is OpenBase again.
	call(t, b, true)
	clk.advance(100 * time.Millisecond)
	if b.State() != HalfOpen {
		t.Fatalf("state %v 100ms after a fresh trip, want half-open (backoff reset)", b.State())
	}
}

func TestBreakerJitterShortensWithinBounds(t *testing.T) {
	for range 50 {
		b := New("j", Settings{OpenBase: time.Second, Jitter: 0.2})
		d := b.openFor(1)
		if d > time.Second || d < 800*time.Millisecond {
			t.Fatalf("open period %v outside [800ms, 1s]", d)
		}
		b.Close()
	}
	// A cap near the largest Duration: doubling used to overflow to a negative period, an open breaker that did not
	// stay open at all.
	b := New("huge", Settings{OpenBase: time.Second, OpenMax: math.MaxInt64, Jitter: 0.2})
	defer b.Close()
	for trip := 1; trip <= 100; trip++ {
		if d := b.openFor(trip); d < 800*time.Millisecond {
			t.Fatalf("trip %d: open period %v, want at least OpenBase less the jitter", trip, d)
		}
	}
}

// A NaN setting (GATEWAY_BREAKER_FAILURE_RATIO=NaN parses as a float) takes the default like any value out of range:
// every comparison with NaN is false, so it slipped past the range checks. A NaN ratio tripped on the first failure
// once MinRequests calls were in; a NaN jitter made the open period negative, an open breaker that let calls through.
func TestBreakerNaNSettingsTakeTheDefaults(t *testing.T) {
	b, clk := newTest(t, Settings{MinRequests: 10, FailureRatio: math.NaN(), Jitter: math.NaN()})
	for i := range 10 {
		call(t, b, i == 9)
	}
	if b.State() != Closed {
		t.Fatalf("state %v after 1 failure in 10, want closed", b.State())
	}
	for range 8 {
		call(t, b, true)
	}
	if b.State() != Open {
		t.Fatalf("state %v after 9 failures in 18, want open", b.State())
	}
	clk.advance(100 * time.Millisecond)
	if b.State() != Open {
		t.Fatalf("state %v 100ms after the trip, want still open", b.State())
	}
}

func TestBreakerIgnoresCancellationAndClientErrors(t *testing.T) {
	b, _ := newTest(t, Settings{MinRequests: 10, FailureRatio: 0.5})
	for range 100 {
		r, err := b.Guard(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		r(context.Canceled, 0)
		r, _ = b.Guard(context.Background())
		r(nil, http.StatusBadRequest)
	}
	// 100 successes (the 4xx) and no failures counted: 100 more real
	// failures are needed to reach 50%, cancellations weigh nothing.
	for range 99 {
		r, _ := b.Guard(context.Background())
		r(syscall.ECONNREFUSED, 0)
	}
	if b.State() != Closed {
		t.Fatalf("opened at 99 failures / 199 calls; cancellations or 4xx were counted as failures")
	}
	r, _ := b.Guard(context.Background())
	r(nil, http.StatusServiceUnavailable)
	if b.State() != Open {
		t.Fatalf("state %v at 100/200 failures, want open", b.State())
	}
}

// Guard leaves out what the caller caused, as the gateway does for a
// timeout at its client's deadline: an error or a 504 once the caller went
// away, or once the deadline it sent (X-Request-Timeout-Ms, shorter than the
// route's maximum) passed or is within deadlineSlack (the upstream gave up at
// the deadline it was handed). The route's maximum, a timeout this process
// put on the call, or any deadline not from the header, is the process's own
// and its end is the upstream's failure.
func TestGuardIgnoresTheCallersOwnDeadline(t *testing.T) {
	past := requestContext(t, time.Hour, "1") // the caller's deadline, shorter than the route's
	<-past.Done()
	near := requestContext(t, time.Hour, "1") // at most 1 ms left, less than deadlineSlack
	later := requestContext(t, 0, "3600000")
	routeMax := requestContext(t, time.Millisecond, "") // no header: the route's own maximum
	<-routeMax.Done()
	own, cancelOwn := context.WithTimeout(later, time.Millisecond) // this process's own, under the caller's
	defer cancelOwn()
	<-own.Done()
	plain, cancelPlain := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancelPlain()
	gone, leave := context.WithCancel(context.Background())
	leave()
	timeout := &url.Error{Op: "Get", URL: "http://x", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		err    error
		status int
		want   Outcome
	}{
		{"caller's deadline passed", past, fmt.Errorf("get: %w", context.DeadlineExceeded), 0, Ignored},
		{"i/o timeout after the caller's deadline", past, timeout, 0, Ignored},
		{"504 after the caller's deadline", past, nil, http.StatusGatewayTimeout, Ignored},
		{"504 at the caller's deadline", near, nil, http.StatusGatewayTimeout, Ignored},
		{"not sent at the caller's deadline", near, fmt.Errorf("get: %w", context.DeadlineExceeded), 0, Ignored},
		{"reset after the caller left", gone, fmt.Errorf("read: %w", syscall.ECONNRESET), 0, Ignored},
		{"cancelled", later, fmt.Errorf("client left: %w", context.Canceled), 0, Ignored},
		{"the call's own timeout", later, fmt.Errorf("get: %w", context.DeadlineExceeded), 0, Failure},
		{"i/o timeout with time left", later, timeout, 0, Failure},
		{"504 with time left", later, nil, http.StatusGatewayTimeout, Failure},
		{"504 without a deadline", context.Background(), nil, http.StatusGatewayTimeout, Failure},
		{"the route's maximum passed", routeMax, fmt.Errorf("get: %w", context.DeadlineExceeded), 0, Failure},
		{"504 at the route's maximum", routeMax, nil, http.StatusGatewayTimeout, Failure},
		// deadline.Transport sent nothing: the time went elsewhere, the upstream was not asked.
		{"not sent at the route's maximum", routeMax, &url.Error{Op: "Get", URL: "http://x", Err: deadline.ErrExpired}, 0, Ignored},
		{"not sent at this process's timeout", own, fmt.Errorf("get: %w", deadline.ErrExpired), 0, Ignored},
		{"this process's timeout under the caller's", own, timeout, 0, Failure},
		{"a plain deadline passed", plain, fmt.Errorf("get: %w", context.DeadlineExceeded), 0, Failure},
		{"503 after the caller's deadline", past, nil, http.StatusServiceUnavailable, Failure},
		{"answer after the caller's deadline", past, nil, http.StatusOK, Success},
	} {
		if got := classify(tc.ctx, tc.err, tc.status); got != tc.want {
			t.Errorf("%s: classify = %v, want %v", tc.name, got, tc.want)
		}
	}

	// Through Guard: the caller's deadline neither trips a closed breaker
	// nor closes or re-opens a half-open one, and gives the trial slot back.
	b, clk := newTest(t, Settings{MinRequests: 2, FailureRatio: 0.5, OpenBase: time.Second, Jitter: 0.01, HalfOpenTrials: 1})
	guard := func(ctx context.Context) func(error, int) {
		t.Helper()
		report, err := b.Guard(ctx)
		if err != nil {
			t.Fatalf("Guard in state %v: %v", b.State(), err)
		}
		return report
	}
	for range 50 {
		guard(past)(fmt.Errorf("get: %w", context.DeadlineExceeded), 0)
	}
	guard(later)(nil, http.StatusOK)
	if b.State() != Closed {
		t.Fatalf("state %v after 50 calls cut by the caller's deadline and 1 success, want closed", b.State())
	}
	guard(later)(fmt.Errorf("get: %w", context.DeadlineExceeded), 0)
	if b.State() != Open {
		t.Fatalf("state %v after the call's own timeout made 1 failure in 2, want open", b.State())
	}
	clk.advance(2 * time.Second)
	for range 5 { // more than HalfOpenTrials: each gives its slot back
		guard(past)(nil, http.StatusGatewayTimeout)
	}
	if b.State() != HalfOpen {
		t.Fatalf("state %v after trials cut by the caller's deadline, want half-open", b.State())
	}
	guard(later)(nil, http.StatusOK)
	if b.State() != Closed {
		t.Fatalf("state %v after a successful trial, want closed", b.State())
	}
}

// requestContext is the context a handler behind deadline.Middleware(routeMax)
// gets for a request sending header as X-Request-Timeout-Ms ("" for none).
// The handler stays in its call until the test ends: the middleware cancels
// the context when the handler returns.
func requestContext(t *testing.T, routeMax time.Duration, header string) context.Context {
	t.Helper()
	got, release, served := make(chan context.Context), make(chan struct{}), make(chan struct{})
	r := gin.New()
	r.Use(deadline.Middleware(routeMax))
	r.GET("/", func(c *gin.Context) {
		got <- c.Request.Context()
		<-release
	})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if header != "" {
		req.Header.Set(deadline.Header, header)
	}
	go func() {
		defer close(served)
		r.ServeHTTP(httptest.NewRecorder(), req)
	}()
	t.Cleanup(func() {
		close(release)
		<-served
	})
	return <-got
}

// Guard with the incoming request's context, behind deadline.Middleware, as
// its doc suggests (found by review): on an upstream that never answers, the
// breaker opens when the route's maximum or this process's own timeout ends
// the calls, and stays closed when the caller's shorter deadline does. Before,
// it ignored every call ended once the request's context was done, so a
// black-holed upstream never opened it.
func TestGuardOpensOnAHangingUpstream(t *testing.T) {
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer hang.Close()
	for _, tc := range []struct {
		name     string
		routeMax time.Duration
		header   string
		own      time.Duration // a timeout the handler puts on the call, 0 for none
		want     State
	}{
		{"the route's maximum ends each call", 30 * time.Millisecond, "", 0, Open},
		{"the handler's own timeout ends each call", time.Minute, "60000", 30 * time.Millisecond, Open},
		{"the caller's deadline ends each call", time.Minute, "30", 0, Closed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(t.Name(), Settings{MinRequests: 5, FailureRatio: 0.5})
			r := gin.New()
			r.Use(deadline.Middleware(tc.routeMax))
			r.GET("/", func(c *gin.Context) {
				ctx := c.Request.Context()
				report, err := b.Guard(ctx)
				if err != nil {
					c.Status(http.StatusServiceUnavailable)
					return
				}
				callCtx := ctx
				if tc.own > 0 {
					var cancel context.CancelFunc
					callCtx, cancel = context.WithTimeout(ctx, tc.own)
					defer cancel()
				}
				req, err := http.NewRequestWithContext(callCtx, http.MethodGet, hang.URL, nil)
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := hang.Client().Do(req)
				status := 0
				if resp != nil {
					status = resp.StatusCode
					_ = resp.Body.Close()
				}
				report(err, status)
				c.Status(http.StatusGatewayTimeout)
			})
			for range 10 {
				req := httptest.NewRequest(http.MethodGet, "/", nil)
				if tc.header != "" {
					req.Header.Set(deadline.Header, tc.header)
				}
				r.ServeHTTP(httptest.NewRecorder(), req)
			}
			if b.State() != tc.want {
				t.Fatalf("after 10 calls to an upstream that never answers: breaker %v, want %v", b.State(), tc.want)
			}
		})
	}
}

// Admit's Ignored leaves a call out of the counts while closed, and while
// half-open gives its trial slot back without closing the breaker: calls
// that never reached the upstream, or were cut by the caller's own
// deadline, prove nothing about it.
func TestBreakerAdmitIgnored(t *testing.T) {
	b, clk := newTest(t, Settings{MinRequests: 2, FailureRatio: 0.5, OpenBase: time.Second, Jitter: 0.01, HalfOpenTrials: 2})
	admit := func() func(Outcome) {
		t.Helper()
		done, err := b.Admit()
		if err != nil {
			t.Fatalf("Admit in state %v: %v", b.State(), err)
		}
		return done
	}
	for range 50 {
		admit()(Ignored)
	}
	admit()(Success)
	admit()(Failure)
	if b.State() != Open {
		t.Fatalf("state %v after 1 failure in 2 counted calls, want open: ignored calls were counted", b.State())
	}
	clk.advance(2 * time.Second)
	for range 10 { // more than HalfOpenTrials: each gives its slot back
		admit()(Ignored)
	}
	if b.State() != HalfOpen {
		t.Fatalf("state %v after ignored trials, want half-open", b.State())
	}
	admit()(Success)
	admit()(Success)
	if b.State() != Closed {
		t.Fatalf("state %v after 2 successful trials, want closed", b.State())
	}
}

func TestIsFailure(t *testing.T) {
	timeout := &url.Error{Op: "Get", URL: "http://x", Err: os.ErrDeadlineExceeded}
	for _, tc := range []struct {
		name   string
		err    error
		status int
		want   bool
	}{
		{"ok", nil, 200, false},
		{"404", nil, 404, false},
		{"429", nil, 429, false},
		{"500", nil, 500, false},
		{"502", nil, 502, true},
		{"503", nil, 503, true},
		{"504", nil, 504, true},
		{"refused", &url.Error{Op: "Get", Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, 0, true},
		{"reset", fmt.Errorf("read: %w", syscall.ECONNRESET), 0, true},
		{"eof mid-response", &url.Error{Op: "Get", Err: io.ErrUnexpectedEOF}, 0, true},
		{"i/o timeout", timeout, 0, true},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), 0, true},
		{"dns", &net.DNSError{Err: "no such host", Name: "x"}, 0, true},
		{"cancelled", &url.Error{Op: "Get", Err: context.Canceled}, 0, false},
		{"cancelled with 503", context.Canceled, 503, false},
		{"other", errors.New("json: bad"), 0, false},
	} {
		if got := IsFailure(tc.err, tc.status); got != tc.want {
			t.Errorf("%s: IsFailure = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestBreakerStateMetric(t *testing.T) {
	reader := testReader
	b, _ := newTest(t, Settings{MinRequests: 1})
	if got := gauge(t, reader, b.Name()); got != int64(Closed) {
		t.Fatalf("gauge %d, want closed", got)
	}
	call(t, b, true)
	if got := gauge(t, reader, b.Name()); got != int64(Open) {
		t.Fatalf("gauge %d, want open (2)", got)
	}
	b.Close()
	if got := gauge(t, reader, b.Name()); got != -1 {
		t.Fatalf("closed breaker still reported: %d", got)
	}
}

func gauge(t *testing.T, r *sdkmetric.ManualReader, name string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "shanhai.breaker.state" {
				for _, dp := range g.DataPoints {
					if v, _ := dp.Attributes.Value("breaker.name"); v.AsString() == name {
						return dp.Value
					}
				}
			}
		}
	}
	return -1
}

// BenchmarkBreakerAllow is one admission plus its report (the cost per
// guarded call) on a closed breaker.
func BenchmarkBreakerAllow(b *testing.B) {
	br := New("bench", Settings{})
	defer br.Close()
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			done, err := br.Allow()
			if err != nil {
				b.Fatal(err)
			}
			done(false)
		}
	})
}

// BenchmarkBreakerRejectOpen is the fast path while open: an atomic load and
// a clock read, no lock.
func BenchmarkBreakerRejectOpen(b *testing.B) {
	br := New("bench-open", Settings{MinRequests: 1, OpenBase: time.Hour})
	defer br.Close()
	done, _ := br.Allow()
	done(true)
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := br.Allow(); err == nil {
				b.Fatal("admitted while open")
			}
		}
	})
}

// BenchmarkBreakerAdmit is admission alone (Allow on a closed breaker; the
// report is what BenchmarkBreakerAllow adds).
func BenchmarkBreakerAdmit(b *testing.B) {
	br := New("bench-admit", Settings{})
	defer br.Close()
	b.ReportAllocs()
	defer reportCPU(b)()
	b.ResetTimer()
	for range b.N {
		if _, err := br.Allow(); err != nil {
			b.Fatal(err)
		}
	}
}

// A Jitter left at zero takes the default 0.2 like every other zero setting
// ("Zero values take the defaults shown"). It was kept as no jitter at all,
// so the gateway, which sets none, opened every breaker for exactly
// OpenBase·2^n, and a fleet tripped by one outage probed the recovering
// upstream in lockstep, what the jitter is there to prevent.
func TestBreakerZeroJitterTakesTheDefault(t *testing.T) {
	b := New("zero-jitter", Settings{OpenBase: time.Second})
	defer b.Close()
	seen := map[time.Duration]bool{}
	for range 50 {
		d := b.openFor(1)
		if d > time.Second || d < 800*time.Millisecond {
			t.Fatalf("open period %v outside [800ms, 1s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 2 {
		t.Fatalf("50 open periods, all %v: no jitter", seen)
	}
}
