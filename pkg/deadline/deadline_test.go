package deadline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

func init() { gin.SetMode(gin.TestMode) }

// TestPropagationAcrossTwoHops: client → A → B. A gets 2s from its caller but
// spends some of it before calling B; B must see a deadline no later than
// what A had left, and a call A makes after its time is up must not be sent.
func TestPropagationAcrossTwoHops(t *testing.T) {
	var bSaw atomic.Int64 // remaining ms B's handler saw, -1 if none
	var bHits atomic.Int32
	b := gin.New()
	b.Use(Middleware(30 * time.Second))
	b.GET("/b", func(c *gin.Context) {
		bHits.Add(1)
		dl, ok := c.Request.Context().Deadline()
		if !ok {
			bSaw.Store(-1)
		} else {
			bSaw.Store(time.Until(dl).Milliseconds())
		}
		c.Status(http.StatusNoContent)
	})
	srvB := httptest.NewServer(b)
	defer srvB.Close()

	client := &http.Client{Transport: Transport(nil)}
	var aLeft atomic.Int64
	a := gin.New()
	a.Use(Middleware(10 * time.Second))
	a.GET("/a", func(c *gin.Context) {
		ctx := c.Request.Context()
		if wait, _ := strconv.Atoi(c.Query("work_ms")); wait > 0 {
			select { // pretend to work, but stop when the caller's time is up
			case <-time.After(time.Duration(wait) * time.Millisecond):
			case <-ctx.Done():
			}
		}
		dl, _ := ctx.Deadline()
		aLeft.Store(time.Until(dl).Milliseconds())
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srvB.URL+"/b", nil)
		resp, err := client.Do(req)
		if err != nil {
			if errors.Is(err, ErrExpired) {
				c.Status(http.StatusGatewayTimeout)
				return
			}
			c.Status(http.StatusBadGateway)
			return
		}
		_ = resp.Body.Close()
		c.Status(resp.StatusCode)
	})
	srvA := httptest.NewServer(a)
	defer srvA.Close()

	call := func(timeoutMs string, workMs int) int {
		req, _ := http.NewRequest(http.MethodGet, srvA.URL+"/a?work_ms="+strconv.Itoa(workMs), nil)
		if timeoutMs != "" {
			req.Header.Set(Header, timeoutMs)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode
	}

	if code := call("2000", 100); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	saw, left := bSaw.Load(), aLeft.Load()
	if saw <= 0 || saw > left || saw > 1900 {
		t.Fatalf("B saw %dms left; A had %dms after 100ms of a 2000ms budget: want 0 < B ≤ A ≤ 1900", saw, left)
	}

	// Without the header A uses its route max (10s) and passes that on.
	if code := call("", 0); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if saw := bSaw.Load(); saw < 9000 || saw > 10000 {
		t.Fatalf("B saw %dms with A's 10s route max", saw)
	}

	// A's caller allows 50ms; A works 200ms: A's call to B is never sent.
	hits := bHits.Load()
	if code := call("50", 200); code != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", code)
	}
	if bHits.Load() != hits {
		t.Fatal("B was called after the deadline had passed")
	}
}

func TestMiddlewareRejectsExpiredAndMalformed(t *testing.T) {
	ran := false
	r := gin.New()
	r.Use(Middleware(time.Second))
	r.GET("/", func(c *gin.Context) { ran = true; c.Status(http.StatusOK) })
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"0", http.StatusGatewayTimeout},
		{"-5", http.StatusGatewayTimeout},
		{"-9223372036854775", http.StatusGatewayTimeout}, // times 10^6 ns it wrapped to +0.8 ms
		{"soon", http.StatusBadRequest},
		{"1.5", http.StatusBadRequest},
		{"100", http.StatusOK},
		{"99999999999999999", http.StatusOK},    // absurd but capped by the route max
		{"99999999999999999999", http.StatusOK}, // past int64: as absurd, not malformed
		{"+9223372036854775808", http.StatusOK}, // one past int64
		{"-99999999999999999999", http.StatusGatewayTimeout},
		{"99999999999999999999x", http.StatusBadRequest}, // the overflow must not hide the x
		{"1e30", http.StatusBadRequest},
		{"+", http.StatusBadRequest},
	} {
		ran = false
		w := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(Header, tc.header)
		r.ServeHTTP(w, req)
		if w.Code != tc.want {
			t.Errorf("%s=%q: status %d, want %d", Header, tc.header, w.Code, tc.want)
		}
		if (tc.want == http.StatusOK) != ran {
			t.Errorf("%s=%q: handler ran=%v", Header, tc.header, ran)
		}
		if tc.want != http.StatusOK && w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s=%q: not problem+json", Header, tc.header)
		}
	}
}

func TestMiddlewareCapsByRouteMax(t *testing.T) {
	var left time.Duration
	r := gin.New()
	r.Use(Middleware(100 * time.Millisecond))
	r.GET("/", func(c *gin.Context) {
		dl, _ := c.Request.Context().Deadline()
		left = time.Until(dl)
	})
	for _, v := range []string{"60000", "99999999999999999999"} {
		left = 0
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(Header, v)
		r.ServeHTTP(httptest.NewRecorder(), req)
		if left > 100*time.Millisecond || left <= 0 {
			t.Fatalf("%s=%s: deadline %v away, want capped at the 100ms route max", Header, v, left)
		}
	}
}

func TestMiddleware504WhenHandlerRunsOutOfTime(t *testing.T) {
	r := gin.New()
	r.Use(Middleware(20 * time.Millisecond))
	r.GET("/", func(c *gin.Context) { <-c.Request.Context().Done() })
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504", w.Code)
	}
}

// TestMiddlewareKeepsAnAnswerGivenAfterTheDeadline: a handler that carries
// its work out past the caller's deadline (user's logout revokes the session
// on a context detached from the request's) and then answers with a status
// alone, as a 204 is, has answered: gin sends that status as the chain
// ends. The Middleware took "nothing written yet" for "no answer" and sent a
// 504, so a client was told its logout timed out while its session was
// already ended.
func TestMiddlewareKeepsAnAnswerGivenAfterTheDeadline(t *testing.T) {
	r := gin.New()
	r.Use(Middleware(0))
	r.POST("/logout", func(c *gin.Context) {
		<-c.Request.Context().Done() // the work outlives the caller's deadline
		c.Status(http.StatusNoContent)
	})
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/logout", nil)
	req.Header.Set(Header, "20")
	r.ServeHTTP(w, req)
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Fatalf("status %d body %q, want the handler's 204", w.Code, w.Body.String())
	}
}

func TestInject(t *testing.T) {
	h := http.Header{}
	h.Set(Header, "123")
	Inject(context.Background(), h)
	if h.Get(Header) != "" {
		t.Fatal("stale header kept for a context without deadline")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	Inject(ctx, h)
	if ms, _ := strconv.Atoi(h.Get(Header)); ms <= 1000 || ms > 1500 {
		t.Fatalf("injected %q for 1.5s left", h.Get(Header))
	}
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	Inject(expired, h)
	if h.Get(Header) != "0" {
		t.Fatalf("expired context injected %q, want 0", h.Get(Header))
	}
}

func TestTransportDoesNotModifyCallersRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get(Header))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	resp, err := (&http.Client{Transport: Transport(nil)}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if ms, _ := strconv.Atoi(string(body)); ms <= 0 || ms > 1000 {
		t.Fatalf("server got %q", body)
	}
	if req.Header.Get(Header) != "" {
		t.Fatal("Transport wrote into the caller's request")
	}
}

// Abort tells the caller's deadline (504, which a gateway does not hold against the upstream when its client set it)
// from a cancelled request or an inner timeout while the request still had time (503), and leaves other errors alone.
func TestAbort(t *testing.T) {
	expired, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	gone, cancelGone := context.WithCancel(context.Background())
	cancelGone()
	live := context.Background()
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		err     error
		handled bool
		status  int
	}{
		{"deadline passed", expired, fmt.Errorf("load order: %w", context.DeadlineExceeded), true, http.StatusGatewayTimeout},
		{"request cancelled", gone, context.Canceled, true, StatusClientClosedRequest},
		{"inner timeout, request alive", live, fmt.Errorf("argon2 slot: %w", context.DeadlineExceeded), true, http.StatusServiceUnavailable},
		{"other error", expired, errors.New("duplicate key"), false, http.StatusOK},
		// A client library that bounds its I/O by setting the connection's
		// deadline when the context ends reports the I/O's timeout, not the
		// context's error (pgx: "write failed: write tcp ...: i/o timeout").
		{"connection deadline of an expired request", expired, fmt.Errorf("find user: %w", &net.OpError{Op: "write", Net: "tcp", Err: os.ErrDeadlineExceeded}), true, http.StatusGatewayTimeout},
		{"connection deadline of a gone client", gone, fmt.Errorf("find user: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), true, StatusClientClosedRequest},
		{"I/O timeout, request alive", live, fmt.Errorf("find user: %w", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}), false, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			c.Request = httptest.NewRequest(http.MethodGet, "/", nil).WithContext(tc.ctx)
			if got := Abort(c, tc.err); got != tc.handled {
				t.Fatalf("Abort = %v, want %v", got, tc.handled)
			}
			// The status the chain sends as it ends: the 499 is set, not
			// sent, so pkg/server can still make a drain cut-off's 503.
			if got := c.Writer.Status(); got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if tc.status == StatusClientClosedRequest && (c.Writer.Written() || w.Body.Len() != 0) {
				t.Fatalf("the 499 for a client that went away was sent already (body %q)", w.Body)
			}
		})
	}
}

// Caller names the deadline only when the header's value was binding: not
// the route's maximum, nor one this process set since, nor on a context that
// no longer carries it.
func TestCallerIsTheHeadersBindingDeadline(t *testing.T) {
	for _, tc := range []struct {
		name     string
		routeMax time.Duration
		header   string
		derive   func(context.Context) (context.Context, context.CancelFunc)
		want     bool
		outer    []gin.HandlerFunc // middleware before the route's, as pkg/server's Middleware(0)
	}{
		{"shorter than the route's maximum", time.Minute, "30000", nil, true, nil},
		{"no route maximum", 0, "30000", nil, true, nil},
		{"no header: the route's maximum", time.Minute, "", nil, false, nil},
		{"longer than the route's maximum", time.Minute, "120000", nil, false, nil},
		{"as long as the route's maximum", time.Minute, "60000", nil, false, nil},
		{"a shorter timeout derived since", time.Minute, "30000", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, time.Second)
		}, false, nil},
		{"a longer timeout derived since", time.Minute, "30000", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, time.Hour)
		}, true, nil},
		{"detached", time.Minute, "30000", func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithoutCancel(ctx), func() {}
		}, false, nil},
		{"behind a server-wide Middleware(0)", time.Minute, "30000", nil, true, []gin.HandlerFunc{Middleware(0)}},
		{"route maximum behind a server-wide Middleware(0)", time.Minute, "120000", nil, false, []gin.HandlerFunc{Middleware(0)}},
		{"under a shorter maximum of the server's", time.Minute, "30000", nil, false, []gin.HandlerFunc{Middleware(time.Second)}},
		{"behind a server's Derive and Enforce", time.Minute, "30000", nil, true, deriveEnforce(0)},
		{"route maximum behind a server's Derive and Enforce", time.Minute, "120000", nil, false, deriveEnforce(0)},
		{"under a shorter maximum Derive set", time.Minute, "30000", nil, false, deriveEnforce(time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got bool
			var dl, want time.Time
			r := gin.New()
			r.Use(tc.outer...)
			r.Use(Middleware(tc.routeMax))
			r.GET("/", func(c *gin.Context) {
				ctx := c.Request.Context()
				if tc.derive != nil {
					var cancel context.CancelFunc
					ctx, cancel = tc.derive(ctx)
					defer cancel()
				}
				dl, got = Caller(ctx)
				want, _ = ctx.Deadline()
			})
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if tc.header != "" {
				req.Header.Set(Header, tc.header)
			}
			r.ServeHTTP(httptest.NewRecorder(), req)
			if got != tc.want {
				t.Fatalf("Caller ok = %v, want %v", got, tc.want)
			}
			if got && !dl.Equal(want) {
				t.Fatalf("Caller = %v, want the context's deadline %v", dl, want)
			}
		})
	}
}

// A call Transport refused because less than a millisecond of the request's deadline was left (ErrExpired) is that
// deadline passing, as the caller sees it: 504, which a gateway does not hold against this upstream near its client's
// deadline, not the 503 of this server's own doing that it counts as a failure.
func TestAbortAnswersTransportsExpiredCallWith504(t *testing.T) {
	e := gin.New()
	e.Use(Middleware(0))
	refused := errors.New("no call should be sent")
	rt := Transport(roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, refused }))
	e.GET("/", func(c *gin.Context) {
		ctx := c.Request.Context()
		dl, _ := ctx.Deadline()
		time.Sleep(time.Until(dl) - 2*time.Millisecond)
		for time.Until(dl) >= 500*time.Microsecond { // into Transport's last millisecond, before the deadline
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.invalid/", nil)
		_, err := rt.RoundTrip(req)
		if !errors.Is(err, ErrExpired) {
			t.Errorf("RoundTrip with under a millisecond left: %v, want ErrExpired", err)
		}
		if !Abort(c, fmt.Errorf("call upstream: %w", err)) {
			c.Status(http.StatusInternalServerError)
		}
	})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(Header, "20")
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	if w.Code != http.StatusGatewayTimeout {
		t.Fatalf("status %d, want 504: %s", w.Code, w.Body)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestAbortAnswersAConnectionTimeoutAtTheDeadlineWith504: a client library
// that sets its connection's deadline to the context's (go-redis does)
// reports an I/O timeout at that instant, often before the context's own
// timer has fired: ctx.Err() is still nil. Abort then did not take the
// error for the deadline's, and the request was answered as an unknown
// failure (a 500) instead of 504.
func TestAbortAnswersAConnectionTimeoutAtTheDeadlineWith504(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		var held []net.Conn // never answered: each read waits for its deadline
		for {
			c, err := ln.Accept()
			if err != nil {
				for _, c := range held {
					_ = c.Close()
				}
				return
			}
			held = append(held, c)
		}
	}()
	e := gin.New()
	e.Use(Middleware(0))
	e.GET("/", func(c *gin.Context) {
		ctx := c.Request.Context()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		dl, _ := ctx.Deadline()
		_ = conn.SetDeadline(dl)
		_, err = conn.Read(make([]byte, 1))
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("read: %v, want the connection's deadline", err)
		}
		if !Abort(c, fmt.Errorf("get profile: %w", err)) {
			c.Status(http.StatusInternalServerError)
		}
	})
	for i := range 20 { // the context's timer loses the race most of the time, not always
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set(Header, "2")
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code != http.StatusGatewayTimeout {
			t.Fatalf("request %d: status %d, want 504", i, w.Code)
		}
	}
}

// deriveEnforce is how a server that copies each request once uses Derive
// and Enforce: the first handler stands for that copy (pkg/server's
// telemetry middleware), with middleware of its own in between.
func deriveEnforce(routeMax time.Duration) []gin.HandlerFunc {
	return []gin.HandlerFunc{
		func(c *gin.Context) {
			c.Request = c.Request.WithContext(Derive(c.Request.Context(), c.Request.Header, routeMax))
		},
		Enforce(),
	}
}

// TestDeriveAndEnforceAnswerAsMiddleware: Derive puts on the request's context the deadline Middleware would, and
// Enforce gives the answers Middleware gives: 400 for a malformed header and 504 for one with no time left, without
// running the handler, and 504 for a handler with no answer when the deadline passed. The deadline's timer cancels the
// handler's work and what it derived from the context (a database call's own timeout) when it passes, and Enforce
// releases the context as it returns, while Parent still tells whether the request's own context ended.
func TestDeriveAndEnforceAnswerAsMiddleware(t *testing.T) {
	var (
		ran                bool
		ctx, child, parent context.Context
	)
	r := gin.New()
	r.Use(deriveEnforce(0)...)
	r.GET("/", func(c *gin.Context) {
		ran = true
		ctx = c.Request.Context()
		parent = Parent(ctx)
		if c.Query("wait") != "" {
			var cancel context.CancelFunc
			child, cancel = context.WithTimeout(ctx, time.Hour)
			defer cancel()
			<-child.Done()
			return
		}
		c.Status(http.StatusNoContent)
	})
	serve := func(path, header string) *httptest.ResponseRecorder {
		ran, ctx, child, parent = false, nil, nil, nil
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if header != "" {
			req.Header.Set(Header, header)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w
	}

	for _, tc := range []struct {
		header string
		want   int
	}{{"soon", http.StatusBadRequest}, {"0", http.StatusGatewayTimeout}, {"-5", http.StatusGatewayTimeout}} {
		w := serve("/", tc.header)
		if w.Code != tc.want || ran || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s=%q: status %d (%s), handler ran=%v; want a %d problem without running it",
				Header, tc.header, w.Code, w.Header().Get("Content-Type"), ran, tc.want)
		}
	}

	if w := serve("/", ""); w.Code != http.StatusNoContent || !ran {
		t.Fatalf("no header: status %d, handler ran=%v", w.Code, ran)
	}
	if _, ok := ctx.Deadline(); ok || parent != ctx {
		t.Fatalf("no header: the request got a deadline, or Parent is not its own context")
	}

	start := time.Now()
	w := serve("/?wait=1", "30")
	if w.Code != http.StatusGatewayTimeout || w.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("handler past the deadline: status %d, want a 504 problem", w.Code)
	}
	if waited := time.Since(start); waited < 30*time.Millisecond {
		t.Fatalf("answered after %v, before the caller's deadline", waited)
	}
	if !errors.Is(child.Err(), context.DeadlineExceeded) {
		t.Fatalf("the handler's own timeout under the deadline ended with %v, want the deadline's", child.Err())
	}

	if w := serve("/", "60000"); w.Code != http.StatusNoContent {
		t.Fatalf("60 s left: status %d", w.Code)
	}
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > time.Minute {
		t.Fatalf("60 s left: the handler's deadline %v (%v)", dl, ok)
	}
	if ctx.Err() == nil {
		t.Fatal("the deadline's context is still live after Enforce returned: its timer is not released")
	}
	if parent.Err() != nil || parent == ctx {
		t.Fatalf("Parent: %v (the same context: %v), want the live context the deadline was derived from", parent.Err(), parent == ctx)
	}
}

// TestDerivedContextCancelsChildrenOnItsOwn: the context Derive returns wraps the standard library's deadline context,
// and the contexts the handlers derive from it (a database call's timeout, an outgoing request's) must register with
// that one as with any: a wrapper that hid it from the standard library would cost each of them a goroutine that
// waits for the deadline, and they must still end when the request's own context does.
func TestDerivedContextCancelsChildrenOnItsOwn(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctx := Derive(parent, http.Header{Header: {"60000"}}, 0)
	before := runtime.NumGoroutine()
	children := make([]context.Context, 100)
	for i := range children {
		var cancel context.CancelFunc
		children[i], cancel = context.WithTimeout(ctx, time.Hour)
		defer cancel()
	}
	if n := runtime.NumGoroutine() - before; n >= len(children) {
		t.Fatalf("%d goroutines for %d contexts derived from Derive's", n, len(children))
	}
	cancelParent()
	for _, c := range children {
		<-c.Done() // hangs (the test's timeout) if the cancellation does not reach them
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("Derive's context after its parent was cancelled: %v", ctx.Err())
	}
}

// TestReleaseEndsADeadlineEnforceNeverSaw: a layer between Derive and Enforce may answer a request itself, and then only
// Release, in a layer outside both, cancels the deadline's context (its timer would otherwise hold the request until
// the deadline passed) and gives back the context the deadline was derived from.
func TestReleaseEndsADeadlineEnforceNeverSaw(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctx := Derive(parent, http.Header{Header: {"60000"}}, 0)
	if got := Release(ctx); got != parent {
		t.Fatalf("Release returned %v, want the context the deadline was derived from", got)
	}
	if !errors.Is(ctx.Err(), context.Canceled) || parent.Err() != nil {
		t.Fatalf("after Release: the deadline's context %v (want Canceled), its parent %v (want live)", ctx.Err(), parent.Err())
	}
	if got := Release(parent); got != parent {
		t.Fatalf("Release of a context without a derived deadline returned %v, want it back", got)
	}
}

// TestMoreThanOneLineIsRefused: a caller that reaches a service directly, or through a proxy other than the gateway,
// can send the header twice. Taken as the first line, "50000" then "999" gave the handler 50 s where its caller had
// allowed 999 ms, and "" then "999" gave it no caller's deadline at all. Two lines are one value "a, b" (RFC 9110
// §5.3), no integer: a 400 naming the header, without running the handler, as the gateway answers (bad-timeout),
// from Middleware and from Derive with Enforce alike.
func TestMoreThanOneLineIsRefused(t *testing.T) {
	for _, lines := range [][]string{{"50000", "999"}, {"999", "50000"}, {"", "999"}, {"999", ""}, {"999", "999"}} {
		h := http.Header{Header: lines}
		if _, ok, err := Parse(h); !ok || err == nil {
			t.Errorf("Parse(%q): ok=%v err=%v, want a present header refused", lines, ok, err)
		}
		if ctx := Derive(context.Background(), h, time.Minute); ctx != context.Background() {
			t.Errorf("Derive(%q) set a deadline, want none for Enforce to refuse", lines)
		}
		for name, chain := range map[string][]gin.HandlerFunc{
			"Middleware":     {Middleware(time.Minute)},
			"Derive/Enforce": deriveEnforce(time.Minute),
		} {
			ran := false
			r := gin.New()
			r.Use(chain...)
			r.GET("/", func(c *gin.Context) { ran = true; c.Status(http.StatusNoContent) })
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.Header[Header] = lines
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code != http.StatusBadRequest || ran || w.Header().Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s, %s=%q: status %d (%s), handler ran=%v; want a 400 problem without running it",
					name, Header, lines, w.Code, w.Header().Get("Content-Type"), ran)
			}
		}
	}
}

// TestTransportDropsEveryStaleLine: a call whose context has no deadline goes without the header (Inject), however
// the request it was copied from carried it. Transport looked only at the first line, so a first empty line let a
// second go on as it came ("" then "50000": the next hop took 50 s from nobody's deadline).
func TestTransportDropsEveryStaleLine(t *testing.T) {
	var sent []string
	rt := Transport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = r.Header.Values(Header)
		return &http.Response{StatusCode: http.StatusNoContent, Body: http.NoBody, Request: r}, nil
	}))
	for _, lines := range [][]string{{"50000"}, {"", "50000"}, {"50000", ""}} {
		req := httptest.NewRequest(http.MethodGet, "http://upstream/", nil)
		req.Header[Header] = lines
		sent = nil
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatalf("%q: %v", lines, err)
		}
		_ = resp.Body.Close()
		if len(sent) != 0 {
			t.Errorf("%s=%q on a call without a deadline: sent %q, want no header", Header, lines, sent)
		}
	}
}
