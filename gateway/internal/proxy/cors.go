package proxy

import (
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// CORS is the browser cross-origin policy. Origins are exact
// ("https://shop.example") or "*" for any; credentials are allowed only
// for exact matches, as the Fetch standard requires.
type CORS struct {
	Origins []string
	Methods string // Access-Control-Allow-Methods
	Headers string // Access-Control-Allow-Headers
	Expose  string // Access-Control-Expose-Headers
	MaxAge  int    // seconds a preflight may be cached
}

// DefaultCORS allows nothing cross-origin until origins are configured.
func DefaultCORS(origins []string) CORS {
	return CORS{
		Origins: origins,
		Methods: "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
		Headers: "Authorization, Content-Type, Idempotency-Key, X-Request-ID, X-Release-Tag, X-Request-Timeout-Ms",
		Expose:  "X-Request-ID, Retry-After, RateLimit, RateLimit-Policy",
		MaxAge:  600,
	}
}

// allowed returns the Access-Control-Allow-Origin value for origin, or "".
func (c *CORS) allowed(origin []byte) (value []byte, exact bool) {
	for _, o := range c.Origins {
		if o == string(origin) {
			return origin, true
		}
	}
	for _, o := range c.Origins {
		if o == "*" {
			return []byte("*"), false
		}
	}
	return nil, false
}

// handle applies CORS. It answers preflights itself (returning true) and
// for other requests records in st what decorate must add to the answer.
func (c *CORS) handle(x *Exchange) bool {
	st := &x.st
	origin := x.Req.Header.Peek("Origin")
	if len(origin) == 0 {
		return false
	}
	st.cors = true
	value, exact := c.allowed(origin)
	preflight := x.Req.Header.IsOptions() && len(x.Req.Header.Peek("Access-Control-Request-Method")) > 0
	if value == nil {
		st.origin = st.origin[:0]
		if preflight {
			x.problem(fasthttp.StatusForbidden, "cors-origin", "origin "+strconv.Quote(string(origin))+" is not allowed")
			return true
		}
		return false // the browser blocks the response; other clients are unaffected
	}
	st.origin, st.originAll = append(st.origin[:0], origin...), !exact
	if !preflight {
		return false
	}
	method := x.Req.Header.Peek("Access-Control-Request-Method")
	if !listHas(c.Methods, method) {
		x.problem(fasthttp.StatusForbidden, "cors-method", "method "+strconv.Quote(string(method))+" is not allowed cross-origin")
		return true
	}
	h := &x.Resp.Header
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", c.Methods)
	h.Set("Access-Control-Allow-Headers", c.Headers)
	h.Set("Access-Control-Max-Age", strconv.Itoa(c.MaxAge))
	x.Resp.SetStatusCode(fasthttp.StatusNoContent)
	return true
}

// listHas says whether the comma list has v, byte for byte. Methods are
// case-sensitive (RFC 9110 §9.1), and so is the browser's own check of the
// answer (Fetch, CORS-preflight fetch): it upper-cases only the six methods
// it normalises (DELETE, GET, HEAD, OPTIONS, POST, PUT), so a script's
// "patch" is asked for as "patch". Folded, the gateway answered 204 for a
// method the browser then refused against the list.
func listHas(list string, v []byte) bool {
	for item := range strings.SplitSeq(list, ",") {
		if strings.TrimSpace(item) == string(v) {
			return true
		}
	}
	return false
}
