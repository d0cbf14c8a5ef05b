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
	const size = 55
	tp := traceparent
	if len(tp) < size || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return trace.SpanContext{}
	}
	var cfg trace.SpanContextConfig
	var ver, flags [1]byte
	if !unhex(ver[:], tp[0:2]) || !unhex(cfg.TraceID[:], tp[3:35]) || !unhex(cfg.SpanID[:], tp[36:52]) ||
		!unhex(flags[:], tp[53:55]) || ver[0] == 0xff {
		return trace.SpanContext{}
	}
	// Version 00 tolerates one trailing "-" with nothing after it, as the
	// propagator does.
	if ver[0] == 0 && (len(tp) > size && string(tp[size:]) != "-" || flags[0] > 3) || len(tp) > size && tp[size] != '-' {
		return trace.SpanContext{}
	}
	cfg.TraceFlags = trace.TraceFlags(flags[0]) & (trace.FlagsSampled | trace.FlagsRandom)
	cfg.Remote = true
	if len(tracestate) > 0 {
		// As with the propagator, a bad tracestate is dropped and does not
		// invalidate the traceparent.
		cfg.TraceState, _ = trace.ParseTraceState(string(tracestate))
	}
	sc := trace.NewSpanContext(cfg)
	if !sc.IsValid() {
		return trace.SpanContext{}
	}
	return sc
}

// unhex decodes lower-case hex digits, which encoding/hex does too but also
// accepts upper case, which the specification forbids.
func unhex[T ~string | ~[]byte](dst []byte, s T) bool {
	for i := range dst {
		hi, ok1 := hexDigit(s[2*i])
		lo, ok2 := hexDigit(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
