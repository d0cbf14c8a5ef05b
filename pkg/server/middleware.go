package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/gin-gonic/gin"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// RequestIDHeader is read from requests (a caller's id is kept) and always
// set on responses.
const RequestIDHeader = "X-Request-ID"

// requestIDAttr is the log attribute, and the one place the id is kept in
// the context: a second context value would cost two more allocations per
// request for the same string.
const requestIDAttr = "request_id"

// RequestID returns the request id the server assigned to the request whose
// context this is, or "".
func RequestID(ctx context.Context) string {
	for _, a := range telemetry.Attrs(ctx) {
		if a.Key == requestIDAttr {
			return a.Value.String()
		}
	}
	return ""
}

// canonicalRequestID is RequestIDHeader as net/http stores it; indexing the
// header maps with it skips a canonicalisation (and an allocation) per call.
const canonicalRequestID = "X-Request-Id"

// requestContext adds to the request's context what the handlers read from
// it besides the span: the request id and the caller's deadline. The
// telemetry middleware calls it while it derives the request context anyway
// (telemetry.WithContextFunc), so that the request is copied once to carry
// all three: deadline.Middleware's own copy of every request with
// X-Request-Timeout-Ms (all the gateway forwards) cost more than the span.
// A bad header gets no deadline here; deadline.Enforce answers it.
func requestContext(c *gin.Context, ctx context.Context) context.Context {
	return withRequestID(c, deadline.Derive(ctx, c.Request.Header, 0))
}

// withRequestID keeps a sane incoming X-Request-ID or makes one, echoes
// it, and puts it in the context for RequestID and for every log record
// (request_id).
func withRequestID(c *gin.Context, ctx context.Context) context.Context {
	var id string
	if v := c.Request.Header[canonicalRequestID]; len(v) > 0 && validID(v[0]) {
		id = v[0]
	} else {
		id = newID()
	}
	c.Writer.Header()[canonicalRequestID] = []string{id}
	return telemetry.WithAttrs(ctx, slog.String(requestIDAttr, id))
}

// accessLog writes one record per request: at Error for 5xx, else at Debug,
// so busy services do not pay for a line per request unless asked. /readyz's
// 503 is no server error but an answer to the probe (starting,
// stopping, or a dependency down, which readyz logs itself as a warning):
// at Error it put a line in every part's log at every start. A request its
// caller ended (the client went away, or the deadline it sent passed:
// deadline.GaveUp, or had already when it arrived and Enforce answered 504)
// is logged at Info with ended_by saying which, whether it was answered 5xx
// or deadline.Abort's 499: the server did not fail, and at Error every
// client that closed its connection looked like an outage. A
// request the shutdown cut off at the drain deadline is the server's doing:
// ERROR, ended_by "drain deadline", with the status that was sent when its
// response had started (a long download), and a 503 in the log and the
// metrics when its handlers sent nothing (or only set deadline.Abort's
// 499). A
// request whose client went away and whose handlers sent nothing is a 499,
// not gin's default 200. A request whose handler panicked after its response
// had started is cut (cutAfterPanic): ERROR, ended_by "handler panic", with
// the status that was sent.
func (s *Server) accessLog(c *gin.Context) {
	in := c.Request.Context()
	debug := s.log.Enabled(in, slog.LevelDebug)
	var start time.Time
	if debug {
		start = time.Now()
	}

	c.Next()

	// The caller's deadline, which the telemetry middleware put on the
	// request (requestContext), is released here too: deadline.Enforce
	// releases it as the handlers return, but undecodableQuery answers
	// before Enforce runs. outer is the context as the connection gave it,
	// before that deadline: Enforce cancels the deadline's context, so only
	// this one tells whether the client went away.
	outer := deadline.Release(in)

	if !c.Writer.Written() && errors.Is(outer.Err(), context.Canceled) {
		// The connection closed while the handlers ran and they sent nothing:
		// gin would record its default 200, a success no client received.
		// It is the client's leaving (499, as deadline.Abort sets), unless
		// this server's shutdown closed it at the drain deadline: then the
		// server failed the request, a 503 (the same as deadline.Abort's 499
		// then, which it sets without sending). The status is still unsent,
		// so the telemetry middleware outside records this one.
		if s.cutOff.Load() {
			c.Writer.WriteHeader(http.StatusServiceUnavailable)
		} else {
			c.Writer.WriteHeader(deadline.StatusClientClosedRequest)
		}
	}
	status := c.Writer.Status()
	cut := c.Keys[cutKey] != nil
	// A response the drain deadline cut off after it had started (a long
	// download): its status went out, but the body did not reach the client.
	drainCut := s.cutOff.Load() && c.Writer.Written() && errors.Is(outer.Err(), context.Canceled)
	if status < 500 && status != deadline.StatusClientClosedRequest && !debug && !cut && !drainCut {
		return
	}
	ctx := c.Request.Context()
	level, endedBy := slog.LevelDebug, ""
	if status >= 500 || status == deadline.StatusClientClosedRequest {
		endedBy = callerEnded(outer, ctx, c.Request.Header, status)
	}
	switch {
	case cut:
		// Its status went out before the handler panicked: the response is
		// cut (cutAfterPanic), a server error whatever the status says.
		endedBy, level = "handler panic", slog.LevelError
	case drainCut:
		endedBy, level = "drain deadline", slog.LevelError
	case endedBy == clientWentAway && s.cutOff.Load():
		// Shutdown closed the connection as the drain deadline passed, which
		// cancels the request's context as a client leaving does.
		endedBy, level = "drain deadline", slog.LevelError
	case endedBy != "":
		level = slog.LevelInfo
	case status >= 500 && (status != http.StatusServiceUnavailable || c.FullPath() != readyzPath):
		level = slog.LevelError
	}
	if !s.log.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", c.Request.Method),
		slog.String("route", c.FullPath()),
		slog.String("path", c.Request.URL.Path),
		slog.Int("status", status),
	}
	if endedBy != "" {
		attrs = append(attrs, slog.String("ended_by", endedBy))
	}
	if debug {
		// The duration histogram and the span have it too; a clock read
		// per request is only spent when debug lines are wanted.
		attrs = append(attrs, slog.Duration("duration", time.Since(start)))
	}
	s.log.LogAttrs(ctx, level, "request", attrs...)
}

// The ended_by values of the requests their caller ended (callerEnded).
const (
	clientWentAway  = "client went away"
	callersDeadline = "caller's deadline passed"
)

// callerEnded says how the caller ended a request, or "" when it did not:
// the client went away (net/http cancelled outer, the request's context
// without the caller's deadline, as the connection closed), or the
// deadline it sent passed (read from final, the request's context as the
// handlers left it, which carries that deadline). final's own Err says
// nothing: deadline.Enforce cancels the deadline's context on its way out,
// so it reads Canceled for every request that sent a deadline.
//
// A request whose header h says no time was left when it arrived (0 or
// less) has no deadline on final (deadline.Derive sets none); Enforce
// answers it 504 without running the handlers. Its status is read along
// with h so that only that 504 is put on the caller: any other 5xx of such a
// request came from a layer before Enforce failing, which is the server's.
func callerEnded(outer, final context.Context, h http.Header, status int) string {
	if errors.Is(outer.Err(), context.Canceled) {
		return clientWentAway
	}
	if dl, ok := deadline.Caller(final); ok && !time.Now().Before(dl) {
		return callersDeadline
	}
	if status == http.StatusGatewayTimeout {
		if remaining, ok, err := deadline.Parse(h); ok && err == nil && remaining <= 0 {
			return callersDeadline
		}
	}
	return ""
}

// validID accepts what a proxy would plausibly send (visible ASCII, at most
// 128 bytes); anything else is replaced so logs cannot be forged through it.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// newID makes 128 random bits in hex. Request ids need uniqueness, not
// secrecy, so the runtime's fast generator is enough.
func newID() string {
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b[:])
}

// cutKey marks (in gin's Keys) a request whose handler panicked after its
// response had started: cutAfterPanic cuts it.
const cutKey = "shanhai.server.cut"

// cutAfterPanic is the outermost handler of every chain: once everything else
// is done with the request, it aborts the response recovery could not answer
// (http.ErrAbortHandler: net/http closes the HTTP/1 connection without ending
// the body, and resets an HTTP/2 stream), so the client sees an error, not a
// short body that ends cleanly. It is outside headAsGet, so a HEAD request
// answered by a GET route is cut as well.
func (s *Server) cutAfterPanic(c *gin.Context) {
	c.Next()
	if c.Keys[cutKey] != nil { // set by this request's own goroutine: no lock needed
		panic(http.ErrAbortHandler)
	}
}

type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("panic: %v", p.v) }

// recovery turns a handler panic into a logged error and a 500 problem; the
// process keeps serving. http.ErrAbortHandler is re-raised: it is how a
// handler asks net/http to drop the connection, and net/http handles it.
func (s *Server) recovery(c *gin.Context) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler {
			panic(r)
		}
		ctx := c.Request.Context()
		s.log.ErrorContext(ctx, "panic in handler",
			slog.String("panic", fmt.Sprint(r)),
			slog.String("path", c.Request.URL.Path),
			slog.String("stack", string(debug.Stack())),
		)
		span := trace.SpanFromContext(ctx)
		span.RecordError(panicError{r})
		span.SetStatus(codes.Error, "panic")
		if c.Writer.Written() {
			// The status and maybe part of the body are on the wire. Returning
			// would let net/http end the response as complete (a chunked
			// body's last chunk), and the client would take a truncated body
			// for the whole answer: cutAfterPanic drops the connection instead,
			// once the outer layers have logged and measured the request.
			c.Set(cutKey, true)
			c.Abort()
			return
		}
		problem.Abort(c, http.StatusInternalServerError, "internal error; request id "+RequestID(ctx))
	}()
	c.Next()
}
