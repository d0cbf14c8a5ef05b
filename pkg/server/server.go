// Package server is the one way a Shanhai binary serves HTTP: a gin engine
// with recovery, request ids, tracing and metrics, problem+json errors, HEAD
// answered by the GET route of its path, a 400 for a query gin would read
// with pairs silently dropped, /healthz, /readyz and /metrics,
// pprof on a separate admin listener, and a graceful shutdown whose order is
// fixed:
//
//  1. deregister from discovery, so callers stop choosing this instance
//     (within DeregisterTimeout; then wait DeregisterDelay);
//  2. stop accepting connections and drain in-flight requests, within
//     ShutdownTimeout (then remaining connections are closed);
//  3. run the OnShutdown hooks (stop consumers, close the database), in the
//     order they were added, each within ShutdownTimeout;
//  4. flush telemetry, so the spans of the last requests are exported,
//     within what is left of the stop's deadline, at least FlushFloor.
//
// A start that fails (a listener that cannot be bound, a start-up step that
// errs) stops the same way once the server exists, so the hooks still close
// what the wiring opened; one that never served skips the wait after
// deregistering and the drain.
//
// Readiness turns 503 as soon as shutdown starts, so a load balancer that
// probes /readyz stops routing here even before deregistration propagates.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// Options configure a Server. Zero values work: Addr ":8080", a 10 s
// shutdown, a 30 s bound on reading a request, the default slog logger, no
// admin listener, no checks.
type Options struct {
	Name, Version, Addr, AdminAddr string

	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	Telemetry       *telemetry.Provider
	Checks          []Check                     // readiness; /readyz 503 names the failing checks
	Deregister      func(context.Context) error // called first on shutdown

	// DeregisterDelay waits after deregistering before the listener closes,
	// for callers whose resolvers learn of the change a little later. Zero
	// means no wait. Services registered in discovery pass
	// DefaultDeregisterDelay. A server run under CallersStopped waits only
	// until its host says those callers have stopped.
	DeregisterDelay time.Duration

	// ReadyTimeout bounds all readiness probes together (default 2 s): a
	// probe that hangs is a failed probe, not a hung /readyz.
	ReadyTimeout time.Duration

	// OnReady, if set, runs once, when the first 200 from /readyz has been
	// sent in full: for work that may follow readiness at once but must not
	// slow the answer down (startgc.Ready, whose first collection would
	// otherwise run beside it).
	OnReady func()

	// ReadTimeout bounds reading a request, counted from its first byte to
	// the end of its body (default DefaultReadTimeout; negative: no bound).
	// The headers keep their own bound, 10 s (net/http's ReadHeaderTimeout
	// applies while they are read, even when ReadTimeout is shorter).
	// Without it a client sending its body a byte a second held a connection
	// and a handler goroutine for as long as it liked. A body not in
	// by then fails to read: DecodeJSON answers 408 and the connection is
	// closed. Only reading is bounded: a handler that has read its body may
	// take as long as its route allows, and its response is not cut.
	ReadTimeout time.Duration
}

// DefaultReadTimeout is Options.ReadTimeout's default: far more than a
// service's bodies (at most MaxBodyBytes, from the gateway on a local
// network) need, and short enough that slow clients cannot pile up.
const DefaultReadTimeout = 30 * time.Second

// DefaultDeregisterDelay is how long a service registered in discovery keeps
// accepting connections after it left discovery on shutdown. A caller (the
// gateway) learns of the deletion through its etcd watch a little later and
// may pick the instance meanwhile: with no wait its connection met a closed
// listener (refused) or, worse, was reset in the accept queue with the
// request already sent (the order and payment SIGTERM tests caught both).
// A second covers a loaded caller's watch; it is added to every stop.
const DefaultDeregisterDelay = time.Second

// Check is one readiness dependency (database, broker, ...). Probe must
// respect ctx's deadline.
type Check struct {
	Name  string
	Probe func(context.Context) error
}

// Server is a configured, not yet running, HTTP server.
type Server struct {
	o      Options
	log    *slog.Logger
	engine *gin.Engine

	mu       sync.Mutex
	hooks    []func(context.Context) error
	stopping atomic.Bool
	cutOff   atomic.Bool  // the drain deadline passed: shutdown closes the connections still serving
	starting atomic.Int32 // ServeStarting steps still running
	fresh    freshConns   // connections that have not sent a request yet (drain.go)
	wasReady atomic.Bool  // /readyz has answered 200 once
}

// New builds the engine with the shared middleware and endpoints. Mount the
// API on Router() before calling Run.
func New(o Options) *Server {
	if o.Addr == "" {
		o.Addr = ":8080"
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = 2 * time.Second
	}
	switch {
	case o.ReadTimeout == 0:
		o.ReadTimeout = DefaultReadTimeout
	case o.ReadTimeout < 0:
		o.ReadTimeout = 0 // net/http's "no bound"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	useJSONNames()
	gin.SetMode(gin.ReleaseMode)

	s := &Server{o: o, log: o.Logger}
	e := gin.New()
	// Handlers may pass the *gin.Context itself as a context.Context and
	// still get the request's deadline, cancellation and span.
	e.ContextWithFallback = true
	e.HandleMethodNotAllowed = true
	// Order matters: cutAfterPanic outside everything, so a response a
	// panic left half sent is cut after it has been logged and measured;
	// headAsGet next, so a HEAD answered by a GET route is
	// seen by the rest once, as HEAD on that route; then telemetry, so the
	// span and the duration include everything (it also sets the request
	// id), then the access log, then recovery, which turns panics into a
	// 500 the outer layers see, then the caller's deadline
	// (X-Request-Timeout-Ms, which the gateway sends): the handlers' work
	// stops when the caller has given up, and a request that arrives with
	// no time left is a 504 without running them. The deadline itself is
	// put on the request's context by the telemetry middleware's one copy
	// of the request (requestContext); deadline.Enforce, in its place in
	// this order, answers and releases it (the access log releases it for a
	// request answered before Enforce). No header, no deadline. Between
	// recovery and the deadline, a query gin would read with pairs dropped
	// is a 400 (undecodableQuery), measured and logged as one.
	e.Use(s.cutAfterPanic, s.headAsGet, telemetry.Middleware(s.telemetryOptions()...), s.accessLog, s.recovery,
		undecodableQuery, deadline.Enforce())
	e.NoRoute(func(c *gin.Context) {
		problem.Abort(c, http.StatusNotFound, "no route for "+c.Request.URL.Path)
	})
	e.NoMethod(func(c *gin.Context) {
		allowHead(c.Writer.Header())
		problem.Abort(c, http.StatusMethodNotAllowed, c.Request.Method+" is not allowed here; see the Allow header")
	})
	e.GET("/healthz", s.healthz)
	e.GET(readyzPath, s.readyz)
	e.GET("/metrics", gin.WrapH(s.metricsHandler()))
	s.engine = e
	return s
}

// telemetryOptions binds the middleware to the given provider rather than to
// whatever is global, so a test with two servers measures each separately.
// Probes and scrapes are measured but not traced.
func (s *Server) telemetryOptions() []telemetry.MiddlewareOption {
	opts := []telemetry.MiddlewareOption{
		telemetry.WithoutSpans("/healthz", "/readyz", "/metrics"),
		telemetry.WithContextFunc(requestContext),
	}
	if p := s.o.Telemetry; p != nil {
		opts = append(opts, telemetry.WithTracerProvider(p.Tracer), telemetry.WithRegisterer(p.Registry))
	}
	return opts
}

// Router is the engine to mount API routes on.
func (s *Server) Router() *gin.Engine { return s.engine }

// Handler is the whole HTTP handler, for httptest.
func (s *Server) Handler() http.Handler { return s.engine }

// OnShutdown adds a hook that runs after the drain and before telemetry is
// flushed: stop consumers, close the database. Hooks run in the order added;
// each error is logged and returned from Run, and does not stop later hooks.
func (s *Server) OnShutdown(fn func(context.Context) error) {
	s.mu.Lock()
	s.hooks = append(s.hooks, fn)
	s.mu.Unlock()
}
