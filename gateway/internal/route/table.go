// Package route is the gateway's route table: which upstream service serves a
// canonical path, with what timeout, and which method+path pairs are public
// (no token needed). It works on byte slices because it runs on every request.
package route

import (
	"fmt"
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
		routes = append(routes, Route{Name: nameOf(prefix), Prefix: prefix, Service: svc, Timeout: timeout})
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
