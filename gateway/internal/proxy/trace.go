package proxy

import (
	"context"
	"encoding/hex"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/trace"
)

// W3C trace context is read and written by hand rather than through the
// global propagator: the propagator's carrier interface costs several
// allocations per request (string keys, a Keys slice), and the gateway only
// needs traceparent/tracestate. Baggage passes through untouched because the
// gateway forwards client headers as they are.

// extractParent returns ctx carrying the client's remote span context, if it
// sent a valid traceparent.
func extractParent(ctx context.Context, h *fasthttp.RequestHeader) context.Context {
	tp := h.Peek("Traceparent")
	sc, ok := parseTraceparent(tp)
	if !ok {
		return ctx
	}
	if ts := h.Peek("Tracestate"); len(ts) > 0 {
		if state, err := trace.ParseTraceState(string(ts)); err == nil {
			sc = sc.WithTraceState(state)
		}
	}
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// parseTraceparent parses version 00 "00-<32 hex>-<16 hex>-<2 hex>" (and
// accepts longer future versions' prefix, as the spec asks).
func parseTraceparent(b []byte) (trace.SpanContext, bool) {
	if len(b) < 55 || b[2] != '-' || b[35] != '-' || b[52] != '-' {
		return trace.SpanContext{}, false
	}
	if string(b[:2]) == "ff" || (string(b[:2]) == "00" && len(b) != 55) {
		return trace.SpanContext{}, false
	}
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if _, err := hex.Decode(tid[:], b[3:35]); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(sid[:], b[36:52]); err != nil {
		return trace.SpanContext{}, false
	}
	if _, err := hex.Decode(flags[:], b[53:55]); err != nil {
		return trace.SpanContext{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, Remote: true,
	})
	return sc, sc.IsValid()
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
	h.SetBytesV("Traceparent", b)
	if ts := sc.TraceState(); ts.Len() > 0 {
		h.Set("Tracestate", ts.String())
	}
	return b
}
