// Package route is the gateway's route table: which upstream service serves a
// canonical path, with what timeout, and which method+path pairs are public
// (no token needed). It works on byte slices because it runs on every request.
package route

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Route sends every path under Prefix (segment-wise: "/api/v1/orders" matches
// "/api/v1/orders" and "/api/v1/orders/7", not "/api/v1/ordersx") to Service.
type Route struct {
	Name    string // metric label, e.g. "orders"
	Prefix  string
	Service string
	Timeout time.Duration
	// KeyedRetry says the upstream honours Idempotency-Key: it answers a
	// repeated key with the first request's answer instead of doing the
	// work again. Only then may a failed request of a method that is not
	// safe (POST, PATCH, ...) be retried, and only when it carries a key:
	// the instance that failed may have done the work before it failed, and
	// an upstream that ignores the key would do it twice (a refresh token
	// rotated twice revokes its session family; a sign-up runs twice).
	KeyedRetry bool
	// Index is the route's position in its Table, handy for per-route arrays.
	Index int
}

// Public is one unauthenticated entry point. Method "GET" also admits HEAD.
// With Subtree, paths below Path are public too (product details).
type Public struct {
	Method  string
	Path    string
	Subtree bool
}

// DefaultPublic are the platform's unauthenticated calls: register, log in,
// refresh, read the catalogue, fetch the signing keys.
var DefaultPublic = []Public{
	{Method: "POST", Path: "/api/v1/users"},
	{Method: "POST", Path: "/api/v1/sessions"},
	{Method: "POST", Path: "/api/v1/sessions/refresh"},
	{Method: "GET", Path: "/api/v1/products", Subtree: true},
	{Method: "GET", Path: "/.well-known/jwks.json"},
}

// DefaultSpec is the route table in GATEWAY_ROUTES syntax.
const DefaultSpec = "/api/v1/users=user,/api/v1/sessions=user,/.well-known/jwks.json=user," +
	"/api/v1/orders=order,/api/v1/products=order,/api/v1/payments=payment"

// DefaultKeyedRetry lists the prefixes whose upstream honours
// Idempotency-Key (WithKeyedRetry): the order service replays a key's first
// answer to POST /api/v1/orders; the user service ignores the key.
var DefaultKeyedRetry = []string{"/api/v1/orders"}

// Table is an immutable route table; build a new one to change it.
type Table struct {
	routes []Route // longest prefix first
	public []Public
}

// Parse reads "prefix=service,prefix=service" and gives every route the
// same timeout (dynamic config may override per route later).
func Parse(spec string, timeout time.Duration, public []Public) (*Table, error) {
	var routes []Route
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		prefix, svc, ok := strings.Cut(item, "=")
		if !ok || svc == "" {
			return nil, fmt.Errorf("route %q: want prefix=service", item)
		}
		clean, err := Clean(nil, []byte(prefix))
		if err != nil || string(clean) != prefix || (len(prefix) > 1 && prefix[len(prefix)-1] == '/') {
			return nil, fmt.Errorf("route %q: prefix must be a clean absolute path without trailing slash", item)
		}
		// A route's name keys dynamic config (timeouts, keyed_retry) and its
		// metrics: two routes of one name (/api/v1/orders and
		// /admin/orders) took each other's settings, a keyed_retry meant
		// for one retrying the other's POSTs; a prefix named twice left
		// the second route unreachable. Both are refused.
		name := nameOf(prefix)
		for _, r := range routes {
			if r.Prefix == prefix || r.Name == name {
				return nil, fmt.Errorf("routes %q and %q: each prefix once, and each route's name (its last segment, %q) once", r.Prefix, prefix, name)
			}
		}
		routes = append(routes, Route{Name: name, Prefix: prefix, Service: svc, Timeout: timeout})
	}
	if len(routes) == 0 {
		return nil, fmt.Errorf("route table is empty")
	}
	return New(routes, public), nil
}

// New builds a table from routes (any order).
func New(routes []Route, public []Public) *Table {
	rs := append([]Route(nil), routes...)
	sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].Prefix) > len(rs[j].Prefix) })
	for i := range rs {
		rs[i].Index = i
	}
	return &Table{routes: rs, public: append([]Public(nil), public...)}
}

// WithKeyedRetry gives a copy of t in which the routes with these prefixes,
// and only those, have KeyedRetry set. A prefix the table has no route for is
// an error: the flag would silently do nothing.
func (t *Table) WithKeyedRetry(prefixes []string) (*Table, error) {
	c := &Table{routes: append([]Route(nil), t.routes...), public: t.public}
	for i := range c.routes {
		c.routes[i].KeyedRetry = false
	}
	for _, p := range prefixes {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		i := slices.IndexFunc(c.routes, func(r Route) bool { return r.Prefix == p })
		if i < 0 {
			return nil, fmt.Errorf("keyed retry route %q: no route has that prefix", p)
		}
		c.routes[i].KeyedRetry = true
	}
	return c, nil
}

// Routes lists the table, longest prefix first.
func (t *Table) Routes() []Route { return t.routes }

// Match finds the route for a canonical path (see Clean).
func (t *Table) Match(path []byte) (*Route, bool) {
	for i := range t.routes {
		if under(path, t.routes[i].Prefix) {
			return &t.routes[i], true
		}
	}
	return nil, false
}

// IsPublic reports whether method+path may be called without a token.
func (t *Table) IsPublic(method, path []byte) bool {
	for _, p := range t.public {
		if !sameMethod(method, p.Method) {
			continue
		}
		if p.Subtree {
			if under(path, p.Path) {
				return true
			}
		} else if string(path) == p.Path {
			return true
		}
	}
	return false
}

func sameMethod(m []byte, want string) bool {
	if string(m) == want {
		return true
	}
	return want == "GET" && string(m) == "HEAD"
}

// under reports whether path is prefix itself or below it.
func under(path []byte, prefix string) bool {
	if len(path) < len(prefix) || string(path[:len(prefix)]) != prefix {
		return false
	}
	return len(path) == len(prefix) || path[len(prefix)] == '/' || prefix == "/"
}

func nameOf(prefix string) string {
	if i := strings.LastIndexByte(prefix, '/'); i >= 0 && i+1 < len(prefix) {
		return prefix[i+1:]
	}
	return "root"
}
