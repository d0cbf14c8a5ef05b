package proxy

import (
	"encoding/hex"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// W3C trace context is read and written by hand rather than through the
// global propagator: the propagator's carrier interface costs several
// allocations per request (string keys, a Keys slice), and the gateway only
// needs traceparent/tracestate. Baggage passes through untouched because the
// gateway forwards client headers as they are.

// remoteParent is the client's span context, if it sent a valid traceparent
// (parsed as the W3C propagator would, without copying fasthttp's header
// bytes), else the zero SpanContext. It is handed to
// telemetry.ServerTracer as it is: a request that is not sampled then never
// needs it in a context.
// sent says which of the optional fields the client sent: Tracestate
// counts only beside a traceparent, so a request without one costs no Peek.
func remoteParent(h *fasthttp.RequestHeader, sent optional) trace.SpanContext {
	if sent&optTraceparent == 0 {
		return trace.SpanContext{}
	}
	var ts []byte
	if sent&optTracestate != 0 {
		ts = h.Peek("Tracestate")
	}
	return telemetry.ParseTraceparent(h.Peek("Traceparent"), ts)
}

// joinTracestate puts h's Tracestate lines into one, their values joined
// with commas in the order they came: W3C Trace Context reads several lines
// as one list (RFC 9110 §5.3), but Peek, and so remoteParent, reads the
// first only, and the gateway's span lost the members of the others. One
// line means the same to the upstream, and injectTraceparent's Set then
// replaces all of it, not only the first of several. The other fields keep
// their order. Called only for a request with more than one line, so the
// usual request pays nothing (it allocates the joined value).
func joinTracestate(h *fasthttp.RequestHeader) {
	var joined []byte
	for k, v := range h.All() {
		if string(k) == "Tracestate" {
			if len(joined) > 0 {
				joined = append(joined, ',')
			}
			joined = append(joined, v...)
		}
	}
	kept := keepOrder(h, anyName)
	h.Del("Tracestate")
	restore(kept, h)
	h.AddBytesV("Tracestate", joined)
}

// injectTraceparent writes sc as the upstream request's traceparent (and
// tracestate when there is one).
func injectTraceparent(h *fasthttp.RequestHeader, sc trace.SpanContext, scratch []byte) []byte {
	if !sc.IsValid() {
		return scratch
	}
	tid, sid := sc.TraceID(), sc.SpanID()
	b := append(scratch[:0], "00-"...)
	b = hex.AppendEncode(b, tid[:])
	b = append(b, '-')
	b = hex.AppendEncode(b, sid[:])
	if sc.IsSampled() {
		b = append(b, "-01"...)
	} else {
		b = append(b, "-00"...)
	}
	h.SetCanonical(traceparentKey, b)
	if ts := sc.TraceState(); ts.Len() > 0 {
		h.Set("Tracestate", ts.String())
	}
	return b
}

// traceparentKey is the name in fasthttp's canonical form, for SetCanonical
// (see rateLimitKey).
var traceparentKey = []byte("Traceparent")
