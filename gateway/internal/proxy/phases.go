package proxy

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/gateway/internal/authn"
	"github.com/shanhai-dev/shanhai/gateway/internal/canary"
	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
	"github.com/shanhai-dev/shanhai/gateway/internal/route"
	"github.com/shanhai-dev/shanhai/gateway/internal/upstream"
	"github.com/shanhai-dev/shanhai/pkg/auth"
	"github.com/shanhai-dev/shanhai/pkg/breaker"
	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/limit"
	"github.com/shanhai-dev/shanhai/pkg/retry"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// The chain runs in phases so that two transports can drive it: the
// fasthttp server calls them in sequence around a blocking upstream call
// (Handle), the event loop (internal/evloop) sends the request itself and
// calls Received when the answer, an error or the deadline comes, without a
// goroutine of its own per request. Both run exactly this code.
//
//	Begin    clean, CORS, route, limits, auth, deadline, canary, pick,
//	         adaptive limit, breaker: Done (answer in Resp), Send, or Blocked
//	Received accounting for one attempt, then Done or Send (a retry)
//	Finish   decoration, span end, metrics

// Step says what the transport must do next with an Exchange.
type Step uint8

const (
	// Done: Resp holds the answer; call Finish, write it, Release.
	Done Step = iota
	// Send: send Req to Endpoint, then call Received with the outcome,
	// fasthttp.ErrTimeout when Deadline passes first.
	Send
	// Blocked: the next step may wait on the network (a limit lease from
	// Redis, a token verification that may fetch the JWKS); call Begin
	// again with mayBlock true, off any event loop. It resumes where it
	// stopped.
	Blocked
)

// stage is where Begin resumes.
type stage uint8

const (
	stageStart stage = iota
	stageIPLimit
	stageLoginLimit
	stageAuth
	stageUserLimit
)

// Exchange is one request on its way through the chain. The transport owns
// Req, Resp and the connection; the phases fill the rest.
type Exchange struct {
	Req  *fasthttp.Request
	Resp *fasthttp.Response
	Peer netip.Addr
	// Endpoint and Deadline say where to send Req, and by when an answer
	// must be back, when a phase returns Send.
	Endpoint *upstream.Endpoint
	Deadline time.Time
	// clientDeadline: the client's X-Request-Timeout-Ms, shorter than the
	// route's timeout, set Deadline.
	clientDeadline bool
	// Close: the transport must close the client connection after this
	// answer (a request whose framing another hop may have read otherwise).
	Close bool

	st     state
	base   context.Context // cancels blocking steps (the fasthttp RequestCtx)
	reqCtx context.Context // base, or the server span's context
	stage  stage
	// start is the request's one full clock reading (time.Now) for every
	// step that tolerates one a few microseconds old (limit leases, the
	// token cache, the retry budget, the deadline): the token cache reads
	// its wall part (against exp), the others its monotonic one; the attempts' and the answer's readings are derived from it on
	// the monotonic clock (readAfter), and end is the last, which Finish uses.
	start     time.Time
	end       time.Time
	method    uint8
	routeName string
	rt        *route.Route
	svc       *upstream.Service
	span      trace.Span
	// unsampled holds the server span of a request the tracer does not
	// sample (nine in ten), and reqCtx then points into it: a span and
	// context of its own were the last allocation an unsampled request
	// made. Like base (the pooled RequestCtx), reqCtx must not be kept by
	// a Limiter or Authenticator past the call it is given to.
	unsampled telemetry.UnsampledSpan
	// watch: the fasthttp transport looks for the client's close while
	// the request is upstream (clientWatch).
	watch watched
	// login: the request logs in (isLogin) and meets the login limit
	// after the per-IP one.
	login   bool
	public  bool
	user    string
	version string
	tagged  bool
	// weights drew version (no tag): admit may move the request to a
	// heavier release when version's breaker is open.
	weights canary.Weights
	idem    bool
	// http10: the client spoke another version than HTTP/1.1, which
	// start changed to HTTP/1.1 for the upstream and Finish puts back.
	http10  bool
	attempt int
	// The attempt in flight. The concurrency ticket is a value: the
	// closure pkg/limit's Acquire returns was an allocation per request.
	ticket      limit.Ticket
	admitted    bool
	breakerDone func(breaker.Outcome)
	call        trace.Span
	callCtx     context.Context
	t0          time.Time
}

var exchanges = sync.Pool{New: func() any {
	return &Exchange{st: state{path: make([]byte, 0, 128), uri: make([]byte, 0, 256), key: make([]byte, 0, 64),
		rid: make([]byte, 0, 64), origin: make([]byte, 0, 64), hdr: make([]byte, 0, 64), tp: make([]byte, 0, 64),
		xff: make([]byte, 0, 64), num: make([]byte, 0, 16)}}
}}

// NewExchange takes a pooled Exchange for req/resp from a client at peer;
// base, when it ends, cancels steps that wait (nil: never).
func NewExchange(req *fasthttp.Request, resp *fasthttp.Response, peer netip.Addr, base context.Context) *Exchange {
	x := exchanges.Get().(*Exchange)
	if base == nil {
		base = context.Background()
	}
	x.Req, x.Resp, x.Peer, x.base, x.reqCtx = req, resp, peer, base, base
	x.st.rlSet, x.st.cors, x.st.mctx, x.st.respelled = false, false, context.Background(), 0
	x.stage, x.start, x.routeName, x.attempt = stageStart, time.Now(), "unmatched", 0
	return x
}

// Release returns x to the pool; x must not be used afterwards.
func (x *Exchange) Release() {
	st := x.st
	*x = Exchange{st: st}
	x.st.mctx = nil // do not keep the request's context alive in the pool
	exchanges.Put(x)
}

// problem answers with a problem document about this request.
func (x *Exchange) problem(status int, slug, detail string) {
	writeProblem(x.Resp, x.Req.Header.RequestURI(), status, slug, detail)
}

// badRequest answers 400 and has the transport close the connection after
// it (lingering, as after a request it could not read). A request refused
// for its form may have been framed otherwise by a hop in front
// ("Content-Length : 51" is a body there, none here): kept open, the
// connection would read that body as the next request and proxy it (CL.0
// smuggling). nginx, too, closes after every 400.
func (x *Exchange) badRequest(slug, detail string) {
	x.problem(fasthttp.StatusBadRequest, slug, detail)
	x.Close = true
}

// localLimiter is a Limiter that can tell, without waiting, whether it
// decides from local state (quota.Lease: a lease hit, a remembered denial).
type localLimiter interface {
	AllowLocal(key []byte, now time.Time) (d quota.Decision, ok bool)
}

// localAuthenticator is an Authenticator that can answer from its cache
// without waiting (authn.Verifier, from pkg/auth's token cache).
type localAuthenticator interface {
	CachedSubject(token []byte, now time.Time) (subject string, ok bool, err error)
}

// Begin runs the chain up to the upstream call. With mayBlock false it
// stops with Blocked before a step that may wait; calling it again resumes
// at that step.
func (p *Proxy) Begin(x *Exchange, mayBlock bool) Step {
	h := &x.Req.Header
	st := &x.st
	switch x.stage {
	case stageStart:
		if !p.start(x) {
			return Done
		}
		x.stage = stageIPLimit
		fallthrough
	case stageIPLimit:
		if p.o.IPLimit != nil {
			d, ok, err := p.decide(x, p.o.IPLimit, st.key, mayBlock)
			if !ok {
				return Blocked
			}
			if !p.verdict(x, d, err, limitIP) {
				return Done
			}
		}
		x.stage = stageLoginLimit
		fallthrough
	case stageLoginLimit:
		// On top of the per-IP limit, not in its place: in its place, a
		// client the per-IP limit refused still logged in as often as the
		// login limit allowed, and without any limit when that was off.
		if x.login {
			d, ok, err := p.decide(x, p.o.LoginLimit, st.key, mayBlock)
			if !ok {
				return Blocked
			}
			if !p.verdict(x, d, err, limitLogin) {
				return Done
			}
		}
		// Strip what clients must never control before deciding anything else.
		if Sanitize(h) {
			// The client's Connection may have named X-Request-ID: its
			// own field, which it may drop, but by now the gateway's (the
			// id start kept or made, which the answer carries), which the
			// upstream must get to log the request under the same id.
			h.SetCanonical(requestIDKey, st.rid)
		}
		if st.sent&optContinue != 0 && loneExpect(h) {
			// RFC 9110 §10.1.1: the transport gave the 100 at this hop
			// (or owed none: HTTP/1.0, the body already in), and the
			// upstream gets the whole body at once. Forwarded, the
			// expectation made a Go upstream answer a 100 first.
			kept := keepOrder(h, anyName)
			h.Del(fasthttp.HeaderExpect)
			restore(kept, h)
		}
		x.public = p.o.Table.IsPublic(h.Method(), st.path)
		if p.o.Auth != nil && st.sent&optAuthorizationLines != 0 {
			// One credential (RFC 9110 §11.6.2), no list. The chain
			// verifies the first line, and every line went upstream,
			// where a reader that takes the last, or joins them, found
			// another token than the one X-User-ID and the per-user
			// limit were decided by.
			x.problem(fasthttp.StatusBadRequest, "bad-authorization", "Authorization came in more than one field line")
			return Done
		}
		x.stage = stageAuth
		fallthrough
	case stageAuth:
		if p.o.Auth != nil {
			user, ok, err := p.subject(x, mayBlock)
			if !ok {
				return Blocked
			}
			switch {
			case err == nil:
				h.Set(UserHeader, user)
				x.user = user
			case x.public:
				// A public call with a bad token goes on anonymously.
			case errors.Is(err, authn.ErrNoToken):
				x.Resp.Header.Set("WWW-Authenticate", `Bearer realm="shanhai"`)
				x.problem(fasthttp.StatusUnauthorized, "unauthenticated", "this route needs a bearer token")
				return Done
			default:
				if ke := keySetError(err); ke != nil {
					// The token's key could not be looked up (the JWKS
					// fetch failed): the token may be good, and a 401
					// would tell the client to drop it. The user service
					// is the problem.
					x.Resp.Header.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(ke.RetryAfter))))
					x.problem(fasthttp.StatusServiceUnavailable, "auth-unavailable", "the keys to verify the bearer token could not be fetched")
					return Done
				}
				x.Resp.Header.Set("WWW-Authenticate", `Bearer realm="shanhai", error="invalid_token"`)
				x.problem(fasthttp.StatusUnauthorized, "invalid-token", "the bearer token is invalid or expired")
				return Done
			}
		}
		x.stage = stageUserLimit
		fallthrough
	case stageUserLimit:
		if x.user != "" && p.o.UserLimit != nil {
			st.key = append(st.key[:0], x.user...)
			d, ok, err := p.decide(x, p.o.UserLimit, st.key, mayBlock)
			if !ok {
				return Blocked
			}
			if !p.verdict(x, d, err, limitUser) {
				return Done
			}
		}
	}
	st.xff = p.o.Trusted.SetForwarded(h, x.Peer, p.o.TLS, st.sent, st.xff)
	return p.forward(x)
}

// headFault is why Begin refuses a request for its head alone. Every such
// refusal closes the connection: a hop in front may have framed the request
// otherwise, and what follows on the connection may be another request's
// body (or no HTTP/1.x at all, or a tunnel's bytes).
type headFault uint8

const (
	headSound headFault = iota
	headVersion
	headSpacedName
	headFolded
	headNoHost
	headTwoHosts
	headTwoTypes
	headCoding
	headTrailer
	headConnect
	headTarget
	headHost
)

// headAnswers is the answer to each headFault.
var headAnswers = [...]struct {
	status       int
	slug, detail string
}{
	// RFC 9110 §15.6.6: the gateway speaks HTTP/1.0 and HTTP/1.1 only; such
	// a request went upstream as HTTP/1.1 (an HTTP/2.0 or 0.9 client's bytes
	// read as HTTP/1.1). A minor version above 1 (RFC 9112 §2.3 would have
	// it read as 1.1) is refused too. The transports did not wait for a
	// body (HeaderReceived, evloop).
	headVersion:    {fasthttp.StatusHTTPVersionNotSupported, "version-not-supported", "the gateway speaks HTTP/1.1 and HTTP/1.0 only"},
	headSpacedName: {fasthttp.StatusBadRequest, "malformed-request", "a header field name ends in whitespace"},
	// RFC 9112 §5.2 lets a server refuse obs-fold or unfold it; unfolded,
	// "X: y\r\n Content-Length: 48" was one field here and no body, while
	// a hop in front that takes a folded line for a field of its own sent
	// a 48-byte body, read here as the next request and proxied.
	headFolded:   {fasthttp.StatusBadRequest, "malformed-request", "obsolete line folding (obs-fold) is not accepted"},
	headNoHost:   {fasthttp.StatusBadRequest, "malformed-request", "an HTTP/1.1 request needs a Host header"},
	headTwoHosts: {fasthttp.StatusBadRequest, "malformed-request", "the request has more than one Host header"},
	headTwoTypes: {fasthttp.StatusBadRequest, "malformed-request", "the request has more than one Content-Type header"},
	headCoding:   {fasthttp.StatusBadRequest, "malformed-request", "the only transfer coding accepted is chunked, once"},
	headTrailer:  {fasthttp.StatusBadRequest, "malformed-request", "the request has fields in its chunked trailer section"},
	// RFC 9110 §9.1: the gateway does not tunnel, so CONNECT, in any target
	// form, is never forwarded (an origin-form one went upstream as a
	// request to that path); what a client sends next is likely the
	// tunnel's first bytes (a TLS hello), not a request.
	headConnect: {fasthttp.StatusNotImplemented, "not-implemented", "the gateway does not tunnel (CONNECT)"},
	headTarget:  {fasthttp.StatusBadRequest, "bad-path", "the request target is neither a path nor an absolute http URI"},
	headHost:    {fasthttp.StatusBadRequest, "malformed-request", "the Host is not a valid host[:port]"},
}

// headCheck is checkHead's reading of a request head.
type headCheck struct {
	fault headFault
	// ambiguous: a chunked request that also has a Content-Length (RFC
	// 9112 §6.3), or is HTTP/1.0 (§6.1). It is read by its coding, but a
	// hop before the gateway may have framed it otherwise: answered,
	// whatever the answer, then closed, and never outside the chain.
	ambiguous bool
	// closes: the request is chunked, ambiguous or not: answered, then
	// closed (the admin paths too: AdminTrailer). Alone, chunked is sound,
	// but fasthttp's server ends a trailer section at a bare LF
	// ("0\r\n\n", which §2.2 lets a recipient take for CRLF) and keeps
	// nothing of how it ended, while a hop in front that wants CRLF reads
	// what follows as more of the trailer: kept open, those bytes were
	// answered as a request the hop never sent. The event loop refuses
	// that LF itself, but the rule is one for both transports, so that
	// they keep the same connections. The cost is a new connection after
	// each chunked request; the platform's clients send a Content-Length.
	closes bool
	// emptyType: its one Content-Type line is empty (the parser holds no
	// value), to be put back (keepEmptyContentType).
	emptyType bool
	// asterisk: OPTIONS * (or an absolute URI without a path), which the
	// gateway answers itself.
	asterisk bool
	// authority and rest split an absolute-form target (RFC 9112 §3.2.2);
	// authority is nil for any other form.
	authority, rest []byte
}

// checkHead is Begin's judgement of a request's head: its version, its
// framing fields, Host, method and target form, the first fault found in
// the order Begin answers them. sent is sentOptional(h); trailer says that
// fields came in a chunked trailer section (MarkTrailer); lines is
// scanLines of h's raw head. It changes
// nothing, so the transports ask it too before answering an admin path
// outside the chain (AdminFramed).
func checkHead(h *fasthttp.RequestHeader, sent optional, trailer bool, lines headLines) (c headCheck) {
	// The lines are read, not the length the parser left: once an empty
	// chunked body ("0\r\n\r\n") is read that is 0, and such a request
	// kept its connection on both transports.
	hosts, codings, types, chunked := lines.hosts, lines.codings, lines.types, lines.chunked
	c.closes = codings > 0
	c.ambiguous = c.closes && (!h.IsHTTP11() || fieldLines(h.RawHeaders(), "content-length:", 1) > 0)
	switch {
	case !SupportedVersion(h):
		c.fault = headVersion
	case sent&optSpacedName != 0:
		c.fault = headSpacedName
	case lines.folded:
		c.fault = headFolded
	// RFC 9112 §3.2: an HTTP/1.1 request must name its Host, also with an
	// absolute-form target. HTTP/1.0 may not; pick gives such a request the
	// endpoint's address.
	case len(h.Host()) == 0 && h.IsHTTP11():
		c.fault = headNoHost
	// And only once (§3.2 again): the parser keeps the last, and another
	// hop may take the first.
	case hosts > 1:
		c.fault = headTwoHosts
	// Content-Type is a single value too (RFC 9110 §8.3, §5.3): the parser
	// keeps the last line, and a hop in front may have checked the body as
	// the first's type.
	case types > 1:
		c.fault = headTwoTypes
	// RFC 9112 §6.1, §6.3: chunked, once and last, is the only transfer
	// coding read here. The parser refuses the others but took the
	// obsolete "identity" for none (the body framed by Content-Length, or
	// none, and what followed read as the next request) and kept one
	// chunked of several lines (chunked twice, or followed by identity):
	// another hop may frame such a message otherwise (a TE.TE desync).
	case codings > 1 || codings == 1 && !chunked:
		c.fault = headCoding
	// RFC 9110 §6.5.2: trailer fields are not header fields, and the
	// platform's clients send none; the parser made them header fields.
	case trailer:
		c.fault = headTrailer
	case string(h.Method()) == "CONNECT":
		c.fault = headConnect
	}
	if c.fault != headSound {
		return c
	}
	c.emptyType = types == 1 && len(h.ContentType()) == 0
	host := h.Host()
	if target := h.RequestURI(); len(target) > 0 && target[0] != '/' {
		// The authority form (CONNECT) fails here, and so does "*" but
		// for OPTIONS.
		authority, rest, ok := AbsoluteForm(target)
		if string(h.Method()) == "OPTIONS" && (string(target) == "*" || (ok && len(rest) == 0)) {
			c.asterisk = true
			return c
		}
		if !ok {
			c.fault = headTarget
			return c
		}
		c.authority, c.rest, host = authority, rest, authority
	}
	// The Host the upstream gets (the target's authority, or the field):
	// one that is no host[:port] is 400 (RFC 9112 §3.2).
	if len(host) > 0 && !validHost(host) {
		c.fault = headHost
	}
	return c
}

// start is the part of Begin that never waits: request id, canonical path,
// CORS, route, server span, the client's limit key. False: answered.
func (p *Proxy) start(x *Exchange) bool {
	h := &x.Req.Header
	st := &x.st
	x.method = methodIndex(h.Method())
	st.sent = sentOptional(h)
	// Fields from a chunked trailer section are refused below, once the
	// request has its id; sent holds none of them (see MarkTrailer).
	trailer := false
	if st.sent&optTrailerMark != 0 {
		_, trailer = trailed(h)
		h.Del(trailerMark)
	}
	lines := scanLines(h.RawHeaders())
	keepEmptyLines(h, st.sent, lines) // after the mark is gone: they would follow it

	// Request id first, so even a 400 can be correlated.
	var id []byte
	if st.sent&(optRequestID|optRequestIDLines) == optRequestID {
		id = h.Peek(RequestIDHeader)
	}
	if validRequestID(id) {
		st.rid = append(st.rid[:0], id...)
	} else {
		st.rid = appendRequestID(st.rid[:0])
		if st.sent&optRequestIDLines != 0 {
			// Two ids are one value "a, b" (RFC 9110 §5.3), no
			// well-formed id: every client line goes, or Set, which
			// replaces the first, left the others beside the gateway's
			// for a reader that takes the last. Rare: the order of the
			// remaining lines is kept as the hygiene step keeps it.
			kept := keepOrder(h, anyName)
			h.Del(RequestIDHeader)
			restore(kept, h)
		}
		h.SetCanonical(requestIDKey, st.rid)
	}

	// One check decides what Begin takes of the head as it is, and the
	// admin paths ask the same one (AdminFramed): kept apart, the two drifted.
	hc := checkHead(h, st.sent, trailer, lines)
	if hc.closes {
		x.Close = true
	}
	if hc.fault != headSound {
		a := headAnswers[hc.fault]
		x.problem(a.status, a.slug, a.detail)
		x.Close = true
		return false
	}
	if hc.emptyType {
		keepEmptyContentType(h) // its one line is empty (see there)
	}
	// fasthttp writes application/octet-stream for a request with a body
	// and no Content-Type: the upstream was told a media type the client
	// never claimed (RFC 9110 §8.3 leaves a missing one to the recipient).
	h.SetNoDefaultContentType(true)
	if !h.IsHTTP11() {
		// Upstreams get HTTP/1.1 whatever the client spoke: as HTTP/1.0
		// (its Connection: keep-alive is hop-by-hop, dropped) the request
		// made the upstream close the pooled connection after answering,
		// a new connection per request.
		h.SetProtocolBytes(http11)
		x.http10 = true
	}
	if hc.asterisk {
		// OPTIONS * (also as an absolute URI without a path, RFC 9112
		// §3.2.4) asks about the gateway itself: answered here, as no
		// upstream speaks for all of it.
		x.Resp.SetStatusCode(fasthttp.StatusNoContent)
		x.Resp.Header.Set("Allow", allowMethods)
		return false
	}

	// Canonical path: routing, the public check and the upstream all see
	// the same form.
	raw := h.RequestURI()
	absolute := hc.authority != nil
	if absolute {
		// RFC 9112 §3.2.2: the target's authority replaces Host (checkHead
		// checked it as the Host), and its path is routed.
		h.SetHostBytes(hc.authority)
		raw = hc.rest
	}
	pathPart, query := raw, []byte(nil)
	for i, c := range raw {
		if c == '?' {
			pathPart, query = raw[:i], raw[i:]
			break
		}
	}
	// A fragment is no part of a request target (RFC 9112 §3.2; Clean
	// refuses '#' in the path). After the query it went upstream on the
	// event loop and was cut off on fasthttp, which forwards its parsed URI.
	if len(query) > 0 && bytes.IndexByte(query, '#') >= 0 {
		x.badRequest("bad-path", "the request target has a fragment")
		return false
	}
	// Nor a control byte (RFC 3986 §3.4; Clean refuses them in the path):
	// a tab in the query went upstream on the event loop, where a server
	// that splits the request line at any whitespace reads another target
	// and version. The fasthttp server refused it first (ErrorHandler).
	if hasControl(query) {
		x.badRequest("bad-path", "the request target has a control character")
		return false
	}
	if len(pathPart) == 0 { // "http://host" or "http://host?q" (RFC 9112 §3.2.2)
		pathPart = slash
	}
	clean, err := route.Clean(st.path[:0], pathPart)
	st.path = clean
	if err != nil {
		x.badRequest("bad-path", "the request path is malformed")
		return false
	}
	if absolute || string(clean) != string(pathPart) {
		st.uri = append(append(st.uri[:0], clean...), query...)
		// The Request's setter, not the header's: the fasthttp server has
		// parsed the URI already, and the client writes a parsed URI
		// upstream (Request.Write), which was the client's target, not
		// this one.
		x.Req.SetRequestURIBytes(st.uri)
	}

	if p.o.CORS != nil && p.o.CORS.handle(x) {
		return false
	}

	rt, ok := p.o.Table.Match(clean)
	if !ok {
		x.problem(fasthttp.StatusNotFound, "no-route", "no route for this path")
		return false
	}
	x.rt, x.routeName = rt, rt.Name
	if (x.method == optionsMethod || (x.method == 0 && string(h.Method()) == "TRACE")) && !maxForwards(x) {
		return false
	}

	if p.tracer != nil {
		if st.sent&optTraceparentLines != 0 {
			// Two lines are no parent (W3C Trace Context restarts the
			// trace), and injectTraceparent's Set replaces the first
			// only: every client line goes, as for two request ids.
			st.sent &^= optTraceparent
			kept := keepOrder(h, anyName)
			h.Del("Traceparent")
			restore(kept, h)
		}
		if st.sent&(optTraceparent|optTracestateLines) == optTraceparent|optTracestateLines {
			joinTracestate(h)
		}
		x.reqCtx, x.span = p.server.StartIn(&x.unsampled, context.Background(), remoteParent(h, st.sent), rt.Name, serverSpan...)
		if x.span.SpanContext().IsSampled() {
			st.mctx = x.reqCtx
		}
		// Attributes go on in Finish, in one call: each SetAttributes
		// grows the SDK's attribute slice, twice per span when set in two.
	}

	// X-Forwarded-For counts only from a trusted peer: look it up only then.
	// st.xff is SetForwarded's scratch later.
	var xff []byte
	if p.o.Trusted.Contains(x.Peer) {
		st.xff = appendForwardedFor(st.xff[:0], h, st.sent)
		xff = st.xff
	}
	client := p.o.Trusted.ClientIP(x.Peer, xff)
	st.key = appendLimitKey(st.key[:0], client)
	x.login = p.o.LoginLimit != nil && isLogin(h.Method(), clean)
	return true
}

// appendLimitKey appends the per-IP and login limits' key for a client:
// an IPv4 address (also one mapped into IPv6) as it is, an IPv6 address by
// its /64. One IPv6 host commonly owns a whole /64 (SLAAC with privacy
// addresses, RFC 8981; a provider hands a site at least that, RFC 6177),
// and keyed by its /128 it got a fresh bucket with every address it took.
func appendLimitKey(dst []byte, client netip.Addr) []byte {
	client = client.Unmap()
	if client.Is6() {
		if p, err := client.Prefix(64); err == nil {
			return p.AppendTo(dst)
		}
	}
	return client.AppendTo(dst)
}

// optionsMethod is OPTIONS's index in methods (x.method).
var optionsMethod = methodIndex([]byte("OPTIONS"))

// maxForwards applies Max-Forwards to an OPTIONS or TRACE request (RFC 9110
// §7.6.2): at 0 the gateway is the final recipient and answers, OPTIONS
// with what it allows (as for OPTIONS *), TRACE with 501, as it reflects
// no requests; above 0 the upstream gets one less. A value that is not a
// number limits nothing and goes on unchanged. False: answered.
func maxForwards(x *Exchange) bool {
	h := &x.Req.Header
	v := h.Peek("Max-Forwards")
	if len(v) == 0 {
		return true
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	switch {
	case err != nil:
		return true
	case n > 0:
		x.st.num = strconv.AppendUint(x.st.num[:0], n-1, 10)
		h.SetCanonical(maxForwardsKey, x.st.num)
		return true
	case x.method == optionsMethod:
		x.Resp.SetStatusCode(fasthttp.StatusNoContent)
		x.Resp.Header.Set("Allow", allowMethods)
	default:
		x.problem(fasthttp.StatusNotImplemented, "not-implemented", "the gateway does not answer TRACE itself (Max-Forwards: 0)")
	}
	return false
}

// decide asks l about key; ok false means it would have to wait and
// mayBlock forbids that.
func (p *Proxy) decide(x *Exchange, l Limiter, key []byte, mayBlock bool) (d quota.Decision, ok bool, err error) {
	if !mayBlock {
		ll, can := l.(localLimiter)
		if !can {
			return d, false, nil
		}
		d, ok = ll.AllowLocal(key, x.start)
		return d, ok, nil
	}
	d, err = l.Allow(x.reqCtx, key)
	return d, true, err
}

// subject resolves the bearer token; ok false as in decide.
func (p *Proxy) subject(x *Exchange, mayBlock bool) (user string, ok bool, err error) {
	token := authn.Bearer(x.Req.Header.Peek("Authorization"))
	if !mayBlock {
		la, can := p.o.Auth.(localAuthenticator)
		if !can {
			return "", false, nil
		}
		return la.CachedSubject(token, x.start)
	}
	user, err = p.o.Auth.Subject(x.reqCtx, token)
	return user, true, err
}

// verdict applies one limiter's decision; on refusal it has answered 429.
func (p *Proxy) verdict(x *Exchange, d quota.Decision, err error, kind limitKind) bool {
	if err != nil {
		// Only a cancelled request errors; there is nobody to answer.
		x.problem(fasthttp.StatusServiceUnavailable, "limit-unavailable", "rate limit could not be evaluated")
		return false
	}
	if p.metrics != nil {
		p.metrics.limitDecision(kind, d.Allowed)
	}
	if d.Limit > 0 {
		x.st.rl, x.st.rlSet = d, true
	}
	if d.Allowed {
		return true
	}
	x.Resp.Header.Set("Retry-After", strconv.Itoa(max(1, ceilSeconds(d.RetryAfter))))
	x.problem(fasthttp.StatusTooManyRequests, "rate-limited", "too many requests ("+limitNames[kind]+" limit)")
	return false
}

// forward settles the deadline, the canary version and the idempotency of
// the request, then prepares the first attempt.
func (p *Proxy) forward(x *Exchange) Step {
	h := &x.Req.Header
	rt := x.rt
	x.svc = p.o.Upstreams.Service(rt.Service)
	if x.svc == nil {
		x.problem(fasthttp.StatusBadGateway, "no-upstream", "route has no upstream service")
		return Done
	}
	dyn := p.o.Dynamic()

	// Deadline: the route's timeout, or less if the client has less time.
	// MaxTimeout bounds every deadline, not only a client's: start-up
	// refuses a GATEWAY_ROUTE_TIMEOUT above it, and a dynamic document
	// (not checked against the environment, pkg/dynconfig) set 1h and
	// held an upstream connection and concurrency slot that long.
	timeout := rt.Timeout
	if t, ok := dyn.Timeouts[rt.Name]; ok && t > 0 {
		timeout = t
	}
	timeout = min(timeout, p.o.MaxTimeout)
	var v []byte
	if x.st.sent&optTimeout != 0 {
		v = h.Peek(TimeoutHeader)
	}
	if x.st.sent&optTimeoutLines != 0 {
		// Two lines are one value "a, b" (RFC 9110 §5.3), no integer.
		// Taken as the first, the client's other lines went upstream
		// beside the gateway's (Set replaces only the first), a longer
		// budget for a reader that takes the last.
		x.problem(fasthttp.StatusBadRequest, "bad-timeout", TimeoutHeader+" came in more than one field line")
		return Done
	}
	if len(v) > 0 {
		// Read as the services read it (pkg/deadline): 0 or less has
		// expired, and is not sent on with the whole route timeout; past
		// int64 is clamped, not malformed.
		left, err := deadline.ParseValue(string(v))
		switch {
		case err != nil:
			x.problem(fasthttp.StatusBadRequest, "bad-timeout", "invalid "+TimeoutHeader+": "+err.Error())
			return Done
		case left <= 0:
			x.problem(fasthttp.StatusGatewayTimeout, "deadline-expired", "the caller's deadline had passed when the request arrived")
			return Done
		}
		d := min(left, p.o.MaxTimeout)
		if d < timeout {
			timeout, x.clientDeadline = d, true
		}
	}
	x.Deadline = x.start.Add(timeout)

	// Canary: an explicit tag is exact; otherwise the weighted split.
	var tag []byte
	if x.st.sent&(optReleaseTag|optCookie) != 0 {
		tag = canary.Requested(h)
	}
	if len(tag) > 0 {
		x.version, x.tagged = string(tag), true
	} else if w := dyn.Canary[rt.Service]; len(w) > 0 {
		vs := x.svc.Versions()
		x.version = w.Pick(func(v string) bool { return len(vs[v]) > 0 }, rand.Uint64()>>1)
		x.weights = w
	}
	if x.st.sent&optCookie != 0 {
		// After the canary's read of the cookies, which this ends. st.hdr
		// is free until decorate formats the RateLimit field in it.
		x.st.hdr = keepCookieLines(h, x.st.hdr)
	}

	x.idem = isIdempotent(h.Method(), h, x.st.sent, rt, dyn.KeyedRetry)
	x.attempt = 1
	return p.pick(x, nil, false)
}

// refusal is why pick did not send an attempt; 0 is none (admit prepared
// the attempt).
type refusal uint8

const (
	noInstance refusal = iota + 1
	noTimeLeft
	overloaded
	circuitOpen
)

// refuse answers a first attempt that pick refused. A retry's refusal is
// not answered: the client gets the upstream's answer to the attempt that
// was sent, as when the budget denies the retry. Written over that answer,
// the refusal kept its fields (Content-Encoding, Content-Language,
// cookies, validators) on a body that was no longer theirs.
func (x *Exchange) refuse(r refusal) {
	svc := x.svc
	switch r {
	case noInstance:
		detail := "no live instance of " + svc.Name
		if x.tagged {
			detail += " at release " + strconv.Quote(x.version)
		}
		x.problem(fasthttp.StatusServiceUnavailable, "no-instance", detail)
	case noTimeLeft:
		x.problem(fasthttp.StatusGatewayTimeout, "timeout", "route timeout reached before the upstream answered")
	case overloaded:
		x.Resp.Header.Set("Retry-After", "1")
		x.problem(fasthttp.StatusServiceUnavailable, "upstream-overloaded", svc.Name+" is at its concurrency limit")
	case circuitOpen:
		x.Resp.Header.Set("Retry-After", "1")
		detail := svc.Name + " is failing; circuit breaker open"
		if x.version != "" {
			// The breaker is the version's (Pool.SetBreakers).
			detail = svc.Name + " at release " + strconv.Quote(x.version) + " is failing; circuit breaker open"
		}
		x.problem(fasthttp.StatusServiceUnavailable, "circuit-open", detail)
	}
}

// pick chooses an endpoint (another than avoid, if there is one; with
// elsewhere, only another) and prepares an attempt on it: Send, or Done
// when it refused, having answered only a first attempt (see refuse).
func (p *Proxy) pick(x *Exchange, avoid *upstream.Endpoint, elsewhere bool) Step {
	if r := p.admit(x, avoid, elsewhere); r != 0 {
		if x.attempt == 1 {
			x.refuse(r)
		}
		return Done
	}
	if x.attempt == 1 && x.svc.Budget != nil {
		// Only a request sent counts: the budget is a share of what the
		// upstream gets. Counted, the requests refused here made it grow
		// in an overload, where most are refused, until the retries it
		// allowed doubled what the upstream got.
		x.svc.Budget.RequestAt(x.start)
	}
	return Send
}

// admit is pick's work, refusing without answering.
func (p *Proxy) admit(x *Exchange, avoid *upstream.Endpoint, elsewhere bool) refusal {
	svc := x.svc
	ep, err := svc.Pick(x.version, avoid)
	if err != nil || elsewhere && ep == avoid {
		return noInstance
	}
	h := &x.Req.Header
	// One clock read for the deadline check and the attempt's start (clock
	// reads were visible in the event loop's profile). The deadline comes
	// first: a request that will not be sent takes no concurrency ticket
	// and no breaker trial, whose success it would have reported.
	now := readAfter(x.start)
	remaining := x.Deadline.Sub(now)
	if remaining <= 0 {
		return noTimeLeft
	}
	x.admitted, x.breakerDone, x.call = false, nil, nil
	if svc.Limit != nil {
		if x.ticket, x.admitted = svc.Limit.Admit(); !x.admitted {
			if p.metrics != nil {
				p.metrics.decision("concurrency:"+svc.Name, false)
			}
			return overloaded
		}
	}
	if br := svc.BreakerFor(ep); br != nil {
		var err error
		x.breakerDone, err = br.Admit()
		if err != nil && x.version == "" {
			// Breakers are per version (Pool.SetBreakers): a request
			// free to go to any version tries one other instance, of
			// another version whose breaker admits it, before the 503.
			ep, x.breakerDone, err = otherRelease(svc, "", ep, br, avoid, elsewhere)
		} else if err != nil && x.weights != nil {
			// Drawn by the weights: it may move to the heaviest release
			// outweighing its own (a canary's share to the stable
			// release), never the other way (canary.Weights.Heavier).
			vs := svc.Versions()
			if v := x.weights.Heavier(x.version, func(v string) bool { return len(vs[v]) > 0 }); v != "" {
				if ep, x.breakerDone, err = otherRelease(svc, v, ep, br, avoid, elsewhere); err == nil {
					x.version = v // a retry stays there
				}
			}
		}
		if err != nil {
			// Not sent: no signal for the adaptive limit. Handed back as a
			// healthy completion, every refusal beside calls in flight grew
			// the limit while the breaker was open.
			x.forgetConcurrency()
			if p.metrics != nil {
				p.metrics.decision("breaker:"+svc.Name, false)
			}
			return circuitOpen
		}
	}
	x.timeLeft(remaining)

	x.callCtx = x.reqCtx
	if p.tracer != nil {
		// A client span only for a recorded trace: every standard sampler
		// decides a child as it decided the server span, so for the 90% of
		// requests a 10% ratio drops, a client span would be built (span id
		// drawn under the SDK's lock, context value) only to be dropped. The
		// upstream then gets the server span as its parent, which nobody
		// sees because the trace is not recorded. The server span is
		// x.span, the one start put in x.reqCtx: read from the field, not
		// looked up through the context's chain of Value calls.
		if server := x.span; server.IsRecording() {
			// Its attributes go on in Received, in one call.
			x.callCtx, x.call = p.server.StartChild(x.reqCtx, svc.Name, clientSpan...)
			x.st.tp = injectTraceparent(h, x.call.SpanContext(), x.st.tp)
		} else {
			x.st.tp = injectTraceparent(h, server.SpanContext(), x.st.tp)
		}
	}
	if len(h.Host()) == 0 {
		// Only HTTP/1.0 gets here without one (start), and neither
		// transport can write a request upstream without it.
		h.SetHost(ep.Addr)
	}
	x.Endpoint = ep
	x.t0 = now
	ep.Begin()
	return 0
}

// otherRelease picks, for a request whose pick ep's breaker (br) refused,
// another instance of version ("": any) with another breaker and admits it
// there. It returns br's refusal when there is none, or that breaker
// refuses too. Only on a refusal's path: one more P2C draw.
func otherRelease(svc *upstream.Service, version string, ep *upstream.Endpoint, br upstream.Breaker, avoid *upstream.Endpoint, elsewhere bool) (*upstream.Endpoint, func(breaker.Outcome), error) {
	refused := errCircuitOpen
	alt, err := svc.Pick(version, ep)
	if err != nil || alt == ep || elsewhere && alt == avoid {
		return ep, nil, refused
	}
	b := svc.BreakerFor(alt)
	if b == br {
		return ep, nil, refused
	}
	if b == nil {
		return alt, nil, nil
	}
	done, err := b.Admit()
	if err != nil {
		return ep, nil, err
	}
	return alt, done, nil
}

// errCircuitOpen stands for a breaker's refusal where none was asked again.
var errCircuitOpen = errors.New("circuit open")

// timeLeft tells the upstream how long it has: X-Request-Timeout-Ms, at
// least 1.
func (x *Exchange) timeLeft(remaining time.Duration) {
	x.st.num = strconv.AppendInt(x.st.num[:0], max(1, remaining.Milliseconds()), 10)
	x.Req.Header.SetCanonical(timeoutKey, x.st.num)
}

// Replay says whether the transport may send the request of the attempt in
// flight again, once, on a new connection, as part of that attempt: asked
// when the upstream closed or reset a reused keep-alive connection after
// the request went out and before any byte of an answer came. That is most
// often the upstream's idle timeout firing as the request arrived, a race
// no timing on this side can rule out (RFC 9112 §9.3.1), and no failure of
// the upstream; answered 502 it also counted against the upstream in the
// breaker, and what the chain retries spent a retry from the budget. But
// the upstream may as well have died while processing the request, so only
// a request that may run twice goes again: an idempotent method (RFC 9110
// §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE), or one with an
// Idempotency-Key its route's upstream honours (isIdempotent: where it
// does not, a keyed refresh ran twice). Both transports hold the whole
// body, so it can always be sent again. It needs time left, which the
// upstream is told again. No retry is taken from the budget and the
// breaker and the adaptive limit hear only how the attempt ends, as of one
// call: the pool lost the request, not the upstream.
func (p *Proxy) Replay(x *Exchange) bool {
	if !x.idem {
		switch string(x.Req.Header.Method()) {
		case "PUT", "DELETE", "TRACE":
		default:
			return false
		}
	}
	remaining := time.Until(x.Deadline)
	if remaining <= 0 {
		return false
	}
	x.timeLeft(remaining)
	if x.call != nil && x.call.IsRecording() {
		x.call.AddEvent("request resent on a new connection: the upstream closed a reused one without answering")
	}
	p.o.Log.DebugContext(x.callCtx, "request resent on a new connection", "upstream", x.svc.Name, "addr", x.Endpoint.Addr)
	return true
}

// deadlineSlack is how long before the client's deadline an upstream's 504
// may come and still be that deadline running out there: each hop sends the
// remaining time in whole milliseconds, rounded down (the gateway here,
// pkg/deadline's Transport at every service), so a chain of a few calls
// ends up to a few milliseconds early.
const deadlineSlack = 5 * time.Millisecond

// keySetError is err's *auth.KeySetError, or nil. The variable errors.As
// fills escapes to the heap: declared in Begin it cost every authenticated
// request an allocation (TestChainUnsampledAllocs), here only a refused one.
func keySetError(err error) *auth.KeySetError {
	var ke *auth.KeySetError
	if errors.As(err, &ke) {
		return ke
	}
	return nil
}

// ErrClientGone is what a transport ends an attempt with when the client
// closed its connection while the request was at the upstream; the
// transport drops that upstream connection, which tells the upstream's
// server to stop (nginx's default, proxy_ignore_client_abort off). Received
// makes it no evidence about the upstream (breaker.Ignored), retries
// nothing and answers 499 without a body (nginx's "client closed request",
// as pkg/deadline's), for the metrics and the span: nobody reads it.
var ErrClientGone = errors.New("the client closed its connection")

// ErrStopping is what a transport ends an attempt with when it could not
// make it because the gateway is stopping: the event loop starts no
// upstream dial once its engine is shutting down, and ends those in
// flight. Received makes it no evidence about the upstream
// (breaker.Ignored, no upstream metric, no error on the call's span),
// retries nothing (a retry would be refused the same way, and was charged
// to the budget) and answers 503 gateway-stopping: the request may go to
// another gateway. Counted as an upstream failure, a rolling restart
// counted every such request against the service's breaker.
var ErrStopping = errors.New("the gateway is stopping")

// statusClientClosed is nginx's 499, client closed request.
const statusClientClosed = 499

// errBadStatus: the upstream's answer has no final status (see Received).
var errBadStatus = errors.New("upstream answer without a final status (1xx or outside 100-599)")

// Received accounts for the attempt Send started: err is the transport's
// (fasthttp.ErrTimeout when the deadline passed), nil when Resp holds the
// upstream's answer. It returns Done, or Send for a retry elsewhere.
func (p *Proxy) Received(x *Exchange, err error) Step {
	ep, svc := x.Endpoint, x.svc
	ep.End()
	now := readAfter(x.start)
	lat := now.Sub(x.t0)
	x.end = now

	status := 0
	if err == nil {
		if status = x.Resp.StatusCode(); status < 200 || status > 599 {
			// An interim answer taken for the final one (fasthttp skips
			// only 100 Continue; a 103 Early Hints came back as the
			// answer, and the client then waited for a final one that
			// never came), or no valid status at all.
			err, status = errBadStatus, 0
		}
	}
	failed := err != nil || status == 502 || status == 503 || status == 504
	gone := err != nil && errors.Is(err, ErrClientGone)
	stopping := err != nil && errors.Is(err, ErrStopping)
	timedOut := err != nil && !gone && !stopping && (errors.Is(err, fasthttp.ErrTimeout) || !now.Before(x.Deadline))
	if !failed {
		ep.Succeeded()
	}
	// A refused connection is the instance's fault, and nothing was sent:
	// the instance is ejected, and the request goes to another one, also a
	// POST, taking a retry from the budget. Such an attempt is no evidence
	// about the service (reroute: Ignored below). Counted, one dead
	// instance still listed in discovery opened the breaker for the live
	// ones.
	var (
		rerouteCharge retry.Withdrawal
		reroute       bool
	)
	if err != nil && !timedOut && !stopping && connectRefused(err) {
		out, fresh := svc.Eject(ep, now)
		if fresh && p.metrics != nil {
			p.metrics.ejection(svc.Name)
		}
		if out && x.attempt < p.o.MaxAttempts {
			if rerouteCharge, reroute = withdraw(svc.Budget); !reroute && p.metrics != nil {
				p.metrics.retry(svc.Name, "denied_by_budget")
			}
		}
	}
	outcome := breaker.Success
	switch {
	case reroute, gone, stopping:
		outcome = breaker.Ignored
	case x.clientDeadline && (timedOut ||
		status == fasthttp.StatusGatewayTimeout && !now.Before(x.Deadline.Add(-deadlineSlack))):
		// The client's own deadline, shorter than the route's, ran out
		// here or at the upstream (which gets it as X-Request-Timeout-Ms):
		// no evidence about the upstream. Counted, any client could open
		// the breaker and shrink the concurrency limit for everyone. A 504
		// well before that deadline is the upstream's own failure.
		outcome = breaker.Ignored
	case failed:
		outcome = breaker.Failure
	}
	if outcome == breaker.Ignored {
		x.forgetConcurrency()
	} else {
		x.endConcurrency(lat, outcome == breaker.Failure)
	}
	if x.breakerDone != nil {
		x.breakerDone(outcome)
	}
	if p.metrics != nil && !stopping {
		mctx := x.st.mctx
		if x.call != nil && x.call.SpanContext().IsSampled() {
			mctx = x.callCtx
		}
		p.metrics.upstream(mctx, svc.Name, x.method, status, lat)
	}
	if span := x.call; span != nil {
		if span.IsRecording() {
			// Per OpenTelemetry's HTTP conventions: a retry says it is one
			// (http.request.resend_count, set only on retries), and a client
			// span with a 4xx or 5xx answer is an error. Without them a
			// failed attempt and its retry looked like two healthy,
			// unrelated calls.
			attrs := [4]attribute.KeyValue{attribute.String("server.address", ep.Addr),
				attribute.String("shanhai.upstream.version", ep.Version), attribute.Int("http.response.status_code", status)}
			n := 3
			if x.attempt > 1 {
				attrs[3], n = attribute.Int("http.request.resend_count", x.attempt-1), 4
			}
			span.SetAttributes(attrs[:n]...)
			switch {
			case stopping: // the gateway's state, not the upstream's
			case err != nil:
				span.RecordError(err)
				span.SetStatus(codes.Error, err.Error())
			case status >= 400:
				span.SetStatus(codes.Error, "")
			}
		}
		span.End()
	}

	if err != nil {
		x.Resp.Reset()
		x.st.respelled = 0
		if gone {
			x.Resp.SetStatusCode(statusClientClosed)
			return Done
		}
		if stopping {
			x.problem(fasthttp.StatusServiceUnavailable, "gateway-stopping", "the gateway is shutting down; retry the request")
			return Done
		}
		if timedOut {
			x.problem(fasthttp.StatusGatewayTimeout, "timeout", "upstream "+svc.Name+" did not answer within the route timeout")
			return Done
		}
		// Debug only: during an outage this fires per request; the breaker,
		// metrics and spans already tell the story at normal levels.
		p.o.Log.DebugContext(x.callCtx, "upstream call failed", "upstream", svc.Name, "addr", ep.Addr, "error", err.Error())
		x.problem(fasthttp.StatusBadGateway, "upstream-unreachable", "upstream "+svc.Name+" did not answer")
		if reroute {
			return p.resend(x, ep, rerouteCharge, true)
		}
	} else {
		x.st.respelled = sanitizeResponse(&x.Resp.Header)
		if status == fasthttp.StatusNoContent || status == fasthttp.StatusNotModified {
			noContent(x.Resp)
		}
		if !failed {
			return Done
		}
	}
	// A failure the client may see retried elsewhere; Resp holds an error
	// answer already, so a denied retry still leaves a proper reply. Not
	// one at the client's own deadline (Ignored: a 504 within
	// deadlineSlack of it): the retry would have a few milliseconds at
	// most, and was sent, charged to the budget, all the same.
	if !x.idem || outcome == breaker.Ignored || x.attempt >= p.o.MaxAttempts || !now.Before(x.Deadline) {
		return Done
	}
	charged, ok := withdraw(svc.Budget)
	if !ok {
		if p.metrics != nil {
			p.metrics.retry(svc.Name, "denied_by_budget")
		}
		return Done
	}
	// An instance's 503 with Retry-After asks not to be asked again before
	// then (RFC 9110 §10.2.3): its retry goes elsewhere or nowhere. Sent
	// back to it (the only instance, or of the release asked for), the
	// retry came within the millisecond it said to wait for.
	elsewhere := status == fasthttp.StatusServiceUnavailable && hasField(&x.Resp.Header, "Retry-After")
	return p.resend(x, ep, charged, elsewhere)
}

// resend sends the retry charged for, to an instance other than ep when
// elsewhere (else preferably), or, when none can take it, refunds the
// charge and ends the exchange with the answer Resp holds.
func (p *Proxy) resend(x *Exchange, ep *upstream.Endpoint, charged retry.Withdrawal, elsewhere bool) Step {
	x.attempt++
	if p.pick(x, ep, elsewhere) != Send {
		// No upstream can take the retry (breaker open, concurrency limit
		// full, no instance or none but the one that asked to wait or was
		// refused, no time left): it is not sent, so it is neither charged
		// nor counted. Kept, every failed half-open trial of an outage
		// spent one, and the window's retries ran out on retries that
		// never happened.
		charged.Refund()
		x.attempt--
		return Done
	}
	if p.metrics != nil {
		p.metrics.retry(x.svc.Name, "sent")
	}
	return Send
}

// connectRefused says whether err is a connection the upstream refused
// (or reset while it was being opened): no byte of the request reached
// it, on either transport (the fasthttp pool's dialer and the event loop's
// both keep the system call's error in the chain).
func connectRefused(err error) bool {
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial" && errors.Is(err, syscall.ECONNRESET)
}

// withdraw takes a retry from b (nil: no budget, always allowed).
func withdraw(b upstream.Budget) (retry.Withdrawal, bool) {
	if b == nil {
		return retry.Withdrawal{}, true
	}
	return b.Take()
}

// hasField says whether h has a field of that name in any letter case: on
// the fasthttp transport an answer's names are as sent, which Peek, looking
// for the canonical spelling only, misses.
func hasField(h *fasthttp.ResponseHeader, name string) bool {
	for k := range h.All() {
		if asciiEqualFold(k, name) {
			return true
		}
	}
	return false
}

// noContent makes a 204 or 304 from upstream one the gateway may send: no
// body (RFC 9110 §15.3.5, §15.4.5; the transports' parsers read none, but
// a body set on the way must not go out), and no Content-Length in a 204
// (§8.6: a server MUST NOT send one). A 304 keeps its Content-Length, the
// length a 200 would have had.
func noContent(resp *fasthttp.Response) {
	resp.ResetBody()
	if resp.StatusCode() == fasthttp.StatusNoContent {
		resp.Header.Del(fasthttp.HeaderContentLength)
	}
}

// Finish decorates the answer and closes the request's span and metrics.
func (p *Proxy) Finish(x *Exchange) {
	if x.http10 {
		// The fasthttp server answers an HTTP/1.0 client by this (keep-alive).
		x.Req.Header.SetProtocolBytes(http10)
	}
	p.decorate(x.Resp, &x.st)
	status := x.Resp.StatusCode()
	if span := x.span; span != nil {
		if span.IsRecording() {
			// x.rt is set: a span starts only once the route is known.
			span.SetAttributes(attribute.String("http.request.method", methods[x.method]), attribute.String("http.route", x.rt.Prefix),
				attribute.String("url.path", string(x.st.path)), attribute.Int("http.response.status_code", status))
			if status >= 500 {
				span.SetStatus(codes.Error, "")
			}
		}
		span.End()
	}
	if p.metrics != nil {
		// The upstream's answer is the request's last clock reading: what
		// is left (decoration) takes well under a histogram bucket's width.
		end := x.end
		if end.IsZero() {
			end = readAfter(x.start)
		}
		p.metrics.request(x.st.mctx, x.routeName, x.method, status, end.Sub(x.start))
	}
}

// endConcurrency hands the attempt's concurrency ticket back, if it holds one.
func (x *Exchange) endConcurrency(lat time.Duration, failed bool) {
	if x.admitted {
		x.admitted = false
		x.svc.Limit.Done(x.ticket, lat, failed)
	}
}

// forgetConcurrency hands the attempt's concurrency ticket back, if it holds
// one, as no signal at all: an Ignored attempt reported as a healthy
// completion grew the limit.
func (x *Exchange) forgetConcurrency() {
	if x.admitted {
		x.admitted = false
		x.svc.Limit.Forget(x.ticket)
	}
}
