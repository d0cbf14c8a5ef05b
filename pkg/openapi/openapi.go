// Package openapi keeps a service's OpenAPI document honest: Check compares
// the operations a document describes with the routes a gin engine serves, so
// a route nobody documented, or a documented operation that does not exist,
// fails the service's tests instead of surprising a client.
package openapi

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"
)

var methods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}

// ginParam matches gin's ":id" path parameters, which OpenAPI writes "{id}".
var ginParam = regexp.MustCompile(`:([A-Za-z_][A-Za-z0-9_]*)`)

// Check reports how doc (an OpenAPI 3.1 JSON document) and routes differ, as
// "METHOD /path" operations. Only routes whose path keep accepts take part
// (nil keeps all), so health and metrics endpoints may stay undocumented.
//
// HEAD on a path whose GET is served may be documented or not: pkg/server
// answers it with the GET route (RFC 9110 says a server should), so it is
// served without a route of its own, and a document is not made to repeat
// every GET as a HEAD that generated clients would then offer as a call.
func Check(doc []byte, routes gin.RoutesInfo, keep func(path string) bool) error {
	var d struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return fmt.Errorf("openapi document: %w", err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.1") {
		return fmt.Errorf("openapi version %q, want 3.1.x", d.OpenAPI)
	}
	var documented []string
	for path, item := range d.Paths {
		for m := range item {
			if methods[m] {
				documented = append(documented, strings.ToUpper(m)+" "+path)
			}
		}
	}
	var served []string
	for _, r := range routes {
		if keep == nil || keep(r.Path) {
			served = append(served, r.Method+" "+ginParam.ReplaceAllString(r.Path, "{$1}"))
		}
	}
	served, documented = withoutImpliedHead(served, served), withoutImpliedHead(documented, served)
	if missing, extra := difference(served, documented), difference(documented, served); len(missing)+len(extra) > 0 {
		return fmt.Errorf("routes and OpenAPI differ\nserved but not documented: %v\ndocumented but not served: %v", missing, extra)
	}
	return nil
}

// withoutImpliedHead leaves out of ops each "HEAD p" whose "GET p" is
// served: that HEAD is answered either way, so it needs neither a route nor
// a document.
func withoutImpliedHead(ops, served []string) []string {
	var out []string
	for _, op := range ops {
		if path, ok := strings.CutPrefix(op, "HEAD "); ok && slices.Contains(served, "GET "+path) {
			continue
		}
		out = append(out, op)
	}
	return out
}

// difference lists the elements of a that are not in b, sorted.
func difference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}
