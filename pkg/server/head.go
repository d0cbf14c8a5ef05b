package server

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
)

// headAsGet answers a HEAD request that no HEAD route takes as the GET route
// of its path would (RFC 9110 §9.3.2: health checkers and caches send HEAD;
// gin alone answers them 405). It is the first handler of every chain after
// cutAfterPanic (which only acts once the others are done), so it runs before
// telemetry, the access log and recovery have seen the request.
//
// gin has already routed the request when a handler runs, so the only way to
// reach the GET route's handlers, group middleware included, is to route
// again: the request goes back through the engine as a GET on a writer that
// marks it, and in that second pass this handler turns the method back into
// HEAD before anything else reads it, so the span, the metrics, the log and
// the handlers all see HEAD. net/http drops a HEAD response's body and, for a
// small one, still sends the Content-Length GET would have.
//
// A request that gin routed to NoRoute or NoMethod is re-routed whatever its
// Allow header says: GET's 404, 405 (with GET's Allow) or trailing-slash
// redirect is then HEAD's too, without a second copy of gin's rules here.
func (s *Server) headAsGet(c *gin.Context) {
	switch c.Request.Method {
	case http.MethodGet:
		// The second pass: the cost for every other GET is this check.
		if u, ok := c.Writer.(interface{ Unwrap() http.ResponseWriter }); ok {
			if _, again := u.Unwrap().(headWriter); again {
				c.Request.Method = http.MethodHead // our copy, made below
			}
		}
	case http.MethodHead:
		if c.FullPath() != "" {
			return // a HEAD route of its own
		}
		c.Abort()
		// gin set Allow for the 405 it was about to send; GET's answer
		// decides now.
		c.Writer.Header().Del("Allow")
		get := c.Request.WithContext(c.Request.Context())
		get.Method = http.MethodGet
		s.engine.ServeHTTP(headWriter{c.Writer}, get)
	}
}

// headWriter is the outer pass's writer as the second pass sees it: every
// write goes through unchanged; its type is the mark headAsGet looks for.
type headWriter struct{ gin.ResponseWriter }

// WriteHeader sends the header at once: the outer gin context, whose status
// still says 405 or 404, must count the response as written, or it would
// append its own text/plain error.
func (w headWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	w.ResponseWriter.WriteHeaderNow()
}

// allowHead adds HEAD to a 405's Allow header wherever GET is allowed, since
// headAsGet answers HEAD there too (RFC 9110 §15.5.6: Allow lists what the
// resource supports).
func allowHead(h http.Header) {
	allow := h.Get("Allow")
	methods := strings.Split(allow, ", ")
	for _, m := range methods {
		if m == http.MethodHead {
			return
		}
	}
	for _, m := range methods {
		if m == http.MethodGet {
			h.Set("Allow", allow+", "+http.MethodHead)
			return
		}
	}
}
