package limit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
)

func init() { gin.SetMode(gin.TestMode) }

func router(mw gin.HandlerFunc) *gin.Engine {
	r := gin.New()
	r.Use(mw)
	r.GET("/x", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	return r
}

// getWithin sends GET /x to r under ctx, with X-Request-Timeout-Ms set to timeout unless it is empty.
func getWithin(ctx context.Context, r http.Handler, timeout string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx)
	if timeout != "" {
		req.Header.Set(deadline.Header, timeout)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	return w
}

func get(r http.Handler, user string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.Header.Set("X-User", user)
	r.ServeHTTP(w, req)
	return w
}

func TestMiddlewareAnswers429WithHeaders(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	l := PerKey(0.5, 2, WithClock(clk.now)) // a token per 2s, burst 2: window 4s
	r := router(Middleware(l, func(c *gin.Context) string { return c.GetHeader("X-User") }, Policy("per-user")))

	w := get(r, "ann")
	if w.Code != http.StatusOK {
		t.Fatalf("first request: %d", w.Code)
	}
	if got, want := w.Header().Get("RateLimit-Policy"), `"per-user";q=2;w=4`; got != want {
		t.Errorf("RateLimit-Policy %q, want %q", got, want)
	}
	if got, want := w.Header().Get("RateLimit"), `"per-user";r=1;t=2`; got != want {
		t.Errorf("RateLimit %q, want %q", got, want)
	}
	get(r, "ann")
	w = get(r, "ann")
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("third request: %d, want 429", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &p); err != nil || p.Status != 429 {
		t.Errorf("body %s: %v", w.Body, err)
	}
	if got := w.Header().Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After %q, want 2", got)
	}
	if got, want := w.Header().Get("RateLimit"), `"per-user";r=0;t=4`; got != want {
		t.Errorf("RateLimit on 429 %q, want %q", got, want)
	}
	if w := get(r, "bob"); w.Code != http.StatusOK {
		t.Errorf("other key: %d", w.Code)
	}
	if w := get(r, ""); w.Code != http.StatusOK || w.Header().Get("RateLimit") != "" {
		t.Errorf("empty key should bypass the limit: %d %v", w.Code, w.Header())
	}
}

type failing struct{}

func (failing) Allow(context.Context, string) (Decision, error) {
	return Decision{}, errors.New("boom")
}

func TestMiddlewareFailsClosed(t *testing.T) {
	r := router(Middleware(failing{}, func(*gin.Context) string { return "k" }))
	if w := get(r, "k"); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("limiter error gave %d, want 503 (never unlimited)", w.Code)
	}
}

// A handler that panics, answered 500 by gin's recovery further out, is a
// failure to the adaptive limiter (it backs off) and gives its slot back;
// a healthy answer leaves an unused limit as it is.
func TestConcurrencyMiddlewareCountsAPanicAsAFailure(t *testing.T) {
	a := NewAdaptive(AdaptiveOptions{Initial: 4, Min: 1, Max: 10})
	r := gin.New()
	r.Use(gin.RecoveryWithWriter(io.Discard), ConcurrencyMiddleware(a))
	r.GET("/x", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	r.GET("/panic", func(*gin.Context) { panic("handler bug") })

	if w := get(r, ""); w.Code != http.StatusOK {
		t.Fatalf("healthy request: %d", w.Code)
	}
	if a.Limit() != 4 || a.InFlight() != 0 {
		t.Fatalf("after a healthy request: limit %d, in flight %d; want 4, 0", a.Limit(), a.InFlight())
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/panic", nil))
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("panicking handler answered %d, want recovery's 500", w.Code)
	}
	if a.InFlight() != 0 {
		t.Fatalf("%d calls in flight after the panic: its slot was not released", a.InFlight())
	}
	if a.Limit() != 3 {
		t.Fatalf("limit %d after a panic, want 3 (4 backed off by 0.9): the panic was counted as healthy", a.Limit())
	}
}

// A request its caller ended — the client went away, or the deadline it sent (X-Request-Timeout-Ms) passed — says
// nothing about this server's capacity: its 499 or 504 (deadline.Abort) frees the slot without shrinking the limit,
// or clients that give up early would shrink it for everyone. A deadline of the server's own (the route's maximum)
// passing is congestion and still counts, as does the handler's own 5xx.
//
// The load shedder may sit inside the deadline layer or, shedding before any other work, outside it; deadline.Middleware
// cancels its context as it returns, and read from outside, that looked like a client gone: every 5xx answered before
// its deadline was forgotten, and the limit never shrank on failures.
func TestConcurrencyMiddlewareForgetsRequestsTheirCallerEnded(t *testing.T) {
	for _, tc := range []struct {
		name      string
		routeMax  time.Duration
		header    string
		cancel    bool
		failNow   bool // the handler answers 503 at once, well within every deadline
		status    int
		initial   int // 1: a healthy completion would grow it to 2; 4: a congested one shrinks it to 3
		wantLimit int
	}{
		{"client went away", 0, "", true, false, deadline.StatusClientClosedRequest, 1, 1},
		{"caller's deadline passed", time.Minute, "30", false, false, http.StatusGatewayTimeout, 1, 1},
		{"route's maximum passed", 30 * time.Millisecond, "", false, false, http.StatusGatewayTimeout, 4, 3},
		{"handler failed", time.Minute, "60000", false, true, http.StatusServiceUnavailable, 4, 3},
	} {
		for _, outside := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/shedder outside the deadline %v", tc.name, outside), func(t *testing.T) {
				a := NewAdaptive(AdaptiveOptions{Initial: tc.initial, Min: 1, Max: 10})
				r := gin.New()
				if outside {
					r.Use(ConcurrencyMiddleware(a), deadline.Middleware(tc.routeMax))
				} else {
					r.Use(deadline.Middleware(tc.routeMax), ConcurrencyMiddleware(a))
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				r.GET("/x", func(c *gin.Context) {
					if tc.failNow {
						c.Status(http.StatusServiceUnavailable)
						return
					}
					if tc.cancel {
						cancel()
					}
					<-c.Request.Context().Done()
					deadline.Abort(c, c.Request.Context().Err())
				})
				w := getWithin(ctx, r, tc.header)
				if w.Code != tc.status {
					t.Fatalf("status %d, want %d", w.Code, tc.status)
				}
				if a.InFlight() != 0 || a.Limit() != tc.wantLimit {
					t.Fatalf("limit %d, in flight %d; want %d, 0", a.Limit(), a.InFlight(), tc.wantLimit)
				}
			})
		}
	}
}

// A limiter that cannot decide because the request's caller ended it (the
// Redis limit's only error) is no server failure: the client that went away
// gets deadline.Abort's 499 and an expired caller's deadline its 504, as
// every handler answers them, not the 503 that counts the caller's leaving
// as this server's error in http.server.request.duration. A Redis that never
// answers keeps the decision pending until the caller ends it.
func TestMiddlewareAnswersARequestItsCallerEndedAsDeadlineAbortDoes(t *testing.T) {
	l := NewRedis(unansweredRedis(t), Rate{Count: 100, Period: time.Minute}, 1, Name("mw-caller-ended"), CallTimeout(time.Hour))
	mw := Middleware(l, func(*gin.Context) string { return "k" })
	for _, tc := range []struct {
		name   string
		header string
		cancel bool
		status int
	}{
		{"client went away", "", true, deadline.StatusClientClosedRequest},
		{"caller's deadline passed", "30", false, http.StatusGatewayTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := gin.New()
			r.Use(deadline.Middleware(time.Minute), mw)
			r.GET("/x", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				time.AfterFunc(30*time.Millisecond, cancel) // the client leaves while Redis is asked
			}
			w := getWithin(ctx, r, tc.header)
			if w.Code != tc.status {
				t.Fatalf("status %d, want deadline.Abort's %d", w.Code, tc.status)
			}
		})
	}
}

// The policy name goes out as a structured-field String (RFC 9651 §3.3.3),
// which holds printable ASCII only, with \ and " escaped by a backslash and
// no other escapes. strconv.Quote wrote a name outside that as Go text (raw
// UTF-8, or \t, \x01, \u escapes), a field a conforming client's parser
// refuses whole; such a name is a wiring mistake, refused when Middleware is
// built as NewRedis refuses a rate of 0.
func TestMiddlewarePolicyNameIsAStructuredFieldString(t *testing.T) {
	l := PerKey(1, 5)
	r := router(Middleware(l, func(*gin.Context) string { return "k" }, Policy(`per "user" \ day`)))
	w := get(r, "k")
	if got, want := w.Header().Get("RateLimit"), `"per \"user\" \\ day";r=4;t=1`; got != want {
		t.Errorf("RateLimit %q, want %q", got, want)
	}
	for _, name := range []string{"über", "tab\there", "nul\x00", "del\x7f"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Middleware accepted the policy name %q, which no structured-field String can carry", name)
				}
			}()
			Middleware(l, func(*gin.Context) string { return "k" }, Policy(name))
		}()
	}
}
