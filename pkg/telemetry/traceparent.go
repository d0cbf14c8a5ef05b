package telemetry

import "go.opentelemetry.io/otel/trace"

// ParseTraceparent reads a W3C traceparent header, and the first tracestate
// header ("" when there is none), into a remote span context, accepting and
// rejecting exactly what propagation.TraceContext does (FuzzParseTraceparent
// compares the two). An invalid header gives the zero SpanContext, as it
// gives the propagator no span.
//
// Written here because that propagator returns what it reads only inside a
// new context (the span boxed in one allocation, the context node in
// another), which neither the middleware, for a request it does not sample,
// nor the gateway, reading fasthttp's header bytes, needs. It takes strings
// or bytes so that neither caller copies the header to call it.
//
// The header is version "-" trace-id "-" parent-id "-" flags, in 2, 32, 16
// and 2 lower-case hex digits; version ff is invalid, version 00 allows
// nothing after the flags and only the sampled and random flag bits, and a
// later version may append "-" and fields of its own.
func ParseTraceparent[T ~string | ~[]byte](traceparent, tracestate T) trace.SpanContext {
	var cfg trace.SpanContextConfig
	if !parseTraceparent(traceparent, &cfg) {
		return trace.SpanContext{}
	}
	cfg.Remote = true
	if len(tracestate) > 0 {
		// As with the propagator, a bad tracestate is dropped and does not
		// invalidate the traceparent.
		cfg.TraceState, _ = trace.ParseTraceState(string(tracestate))
	}
	return trace.NewSpanContext(cfg)
}

// parseTraceparent is ParseTraceparent up to the span context: it writes
// the header's trace id, span id and flags (the sampled and random bits)
// into cfg and reports whether the header is one ParseTraceparent accepts.
// The middleware decides on those fields and writes a dropped span from
// them, without assembling a span context it would take apart again.
func parseTraceparent[T ~string | ~[]byte](tp T, cfg *trace.SpanContextConfig) bool {
	const size = 55
	if len(tp) < size || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return false
	}
	var ver, flags [1]byte
	if !unhex(ver[:], tp[0:2]) || !unhex(cfg.TraceID[:], tp[3:35]) || !unhex(cfg.SpanID[:], tp[36:52]) ||
		!unhex(flags[:], tp[53:55]) || ver[0] == 0xff {
		return false
	}
	// Version 00 tolerates one trailing "-" with nothing after it, as the
	// propagator does.
	if ver[0] == 0 && (len(tp) > size && string(tp[size:]) != "-" || flags[0] > 3) || len(tp) > size && tp[size] != '-' {
		return false
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	return cfg.TraceID.IsValid() && cfg.SpanID.IsValid()
}

// unhex decodes lower-case hex digits, which encoding/hex does too but also
// accepts upper case, which the specification forbids. It looks every digit
// up in hexValues and checks them all at once at the end: a branch per digit
// (a switch on its range) was most of the 70-odd ns a traceparent took to
// parse, on the path of every request that carries one.
func unhex[T ~string | ~[]byte](dst []byte, s T) bool {
	if len(s) < 2*len(dst) {
		return false
	}
	var seen byte
	for i := range dst {
		hi, lo := hexValues[s[2*i]], hexValues[s[2*i+1]]
		seen |= hi | lo
		dst[i] = hi<<4 | lo
	}
	return seen < 16 // no byte was notHex
}

// notHex marks a byte that is not a lower-case hex digit in hexValues; its
// high bits survive the OR unhex folds the values into.
const notHex = 0xff

// hexValues is the value of each lower-case hex digit, notHex for any other
// byte.
var hexValues = func() (t [256]byte) {
	for i := range t {
		t[i] = notHex
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()
