package limit

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
)

// shedderRouter is a router with the load shedder inside or outside deadline.Middleware(routeMax), and handler at
// /x. finished receives once for each request the outermost layer returns from: the shedder has counted it by then.
func shedderRouter(a *Adaptive, outside bool, routeMax time.Duration, handler gin.HandlerFunc) (r *gin.Engine, finished <-chan struct{}) {
	done := make(chan struct{}, 8)
	r = gin.New()
	r.Use(func(c *gin.Context) { defer func() { done <- struct{}{} }(); c.Next() })
	if outside {
		r.Use(ConcurrencyMiddleware(a), deadline.Middleware(routeMax))
	} else {
		r.Use(deadline.Middleware(routeMax), ConcurrencyMiddleware(a))
	}
	r.GET("/x", handler)
	return r, done
}

// A client that goes away over a real connection: net/http cancels the request's context, the handler's
// deadline.Abort answers 499, and the shedder, inside or outside the deadline layer, frees the slot without growing
// the limit. (The other tests cancel a context they made; this one is the server's own.)
func TestConcurrencyMiddlewareForgetsARequestWhoseClientHungUp(t *testing.T) {
	for _, outside := range []bool{false, true} {
		t.Run(fmt.Sprintf("shedder outside the deadline %v", outside), func(t *testing.T) {
			a := NewAdaptive(AdaptiveOptions{Initial: 1, Min: 1, Max: 10}) // a healthy completion would grow it to 2
			started := make(chan struct{})
			r, finished := shedderRouter(a, outside, time.Minute, func(c *gin.Context) {
				close(started)
				<-c.Request.Context().Done()
				deadline.Abort(c, c.Request.Context().Err())
			})
			srv := httptest.NewServer(r)
			defer srv.Close()

			ctx, hangUp := context.WithCancel(t.Context())
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/x", nil)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				<-started
				hangUp() // the transport closes the connection
			}()
			if resp, err := srv.Client().Do(req); err == nil {
				_ = resp.Body.Close()
				t.Fatalf("answered %d; want the request cut by its client", resp.StatusCode)
			}
			select {
			case <-finished:
			case <-time.After(30 * time.Second): // a hang guard, never a timing goal
				t.Fatal("the server never noticed its client had gone")
			}
			if a.InFlight() != 0 || a.Limit() != 1 {
				t.Fatalf("limit %d, in flight %d; want 1, 0", a.Limit(), a.InFlight())
			}
		})
	}
}

// A request that arrives with no time left (X-Request-Timeout-Ms: 0) is the caller's doing: deadline.Middleware
// answers it 504 without running the handlers. Outside that layer the shedder counted the 504 as a failure: clients
// sending spent deadlines shrank the limit for everyone. A malformed header's 400 says nothing either way.
func TestConcurrencyMiddlewareForgetsARequestThatArrivedWithNoTimeLeft(t *testing.T) {
	for _, outside := range []bool{false, true} {
		t.Run(fmt.Sprintf("shedder outside the deadline %v", outside), func(t *testing.T) {
			a := NewAdaptive(AdaptiveOptions{Initial: 4, Min: 1, Max: 10}) // a failure would shrink it to 3
			r, _ := shedderRouter(a, outside, time.Minute, func(c *gin.Context) {
				t.Error("the handler ran for a request with no time left")
			})
			for _, header := range []string{"0", "-5"} {
				if w := getWithin(t.Context(), r, header); w.Code != http.StatusGatewayTimeout {
					t.Fatalf("X-Request-Timeout-Ms %s: status %d, want 504", header, w.Code)
				}
			}
			if a.InFlight() != 0 || a.Limit() != 4 {
				t.Fatalf("limit %d, in flight %d; want 4, 0", a.Limit(), a.InFlight())
			}
		})
	}
}
