package server

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// undecodableQuery answers 400 naming the parameter when the request's raw
// query holds a pair url.ParseQuery drops: a '%' not followed by two hex
// digits, or a ';' (which Go no longer takes for a separator). gin reads the
// query through ParseQuery and ignores its error, so such a pair vanished
// unseen: GET /orders?status=%zz was answered 200 with the whole list, a
// filter the client asked for silently gone. Checked here, once, before
// any handler, so no service can forget it. A request without a query pays
// one comparison.
func undecodableQuery(c *gin.Context) {
	raw := c.Request.URL.RawQuery
	if raw == "" || decodable(raw) {
		return
	}
	problem.Abort(c, http.StatusBadRequest, "invalid query parameters",
		problem.FieldError{Field: undecodableParam(raw), Detail: "is not URL-encoded: a '%' not followed by two hex digits, or a ';'"})
}

// decodable reports whether url.ParseQuery takes every pair of raw. In a
// query component its only refusals are a ';' and a bad percent escape, so a
// scan decides without building the map gin builds again later.
func decodable(raw string) bool {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case ';':
			return false
		case '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f' || 'A' <= b && b <= 'F'
}

// undecodableParam names the first pair of raw that url.ParseQuery drops:
// its decoded name, or the name as sent when the name itself is what does
// not decode. raw is known to hold one.
func undecodableParam(raw string) string {
	for pair := range strings.SplitSeq(raw, "&") {
		if decodable(pair) {
			continue
		}
		key, _, _ := strings.Cut(pair, "=")
		key, _, _ = strings.Cut(key, ";")
		if name, err := url.QueryUnescape(key); err == nil && name != "" {
			return name
		}
		if key != "" {
			return key
		}
		return "query" // a pair with no name, such as "=%zz"
	}
	return "query"
}

// UnknownParams names, sorted, each query parameter of c that known does not
// list, for the route to answer 400 with (problem.Abort). A listing that
// skipped them answered a page other than the one asked for as if it were
// it: a misspelt ?stauts=PAID or ?orderId= listed everything, and ?offset=20
// or ?page=2 (another API's paging) the first page again, on which a client
// paging by it looped for good. It is the rule DecodeJSON applies to a
// body's unknown fields; a route that reads no parameter passes no known
// name and refuses any.
func UnknownParams(c *gin.Context, known ...string) []problem.FieldError {
	var bad []problem.FieldError
	for name := range c.Request.URL.Query() {
		if slices.Contains(known, name) {
			continue
		}
		field := name
		if field == "" {
			// "?=x", named as undecodableParam names a nameless pair: a
			// field "" pointed the client nowhere.
			field = "query"
		}
		detail := "is not a known parameter (this route takes none)"
		if len(known) > 0 {
			detail = "is not a known parameter (" + strings.Join(known, ", ") + ")"
		}
		bad = append(bad, problem.FieldError{Field: field, Detail: detail})
	}
	// Map order is random; the answer to one request should not be.
	slices.SortFunc(bad, func(a, b problem.FieldError) int { return strings.Compare(a.Field, b.Field) })
	return bad
}
