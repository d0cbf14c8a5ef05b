package openapi

import (
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

const doc = `{"openapi":"3.1.0","paths":{"/api/v1/orders/{id}":{"get":{},"parameters":[]},"/api/v1/orders":{"post":{}}}}`

const headDoc = `{"openapi":"3.1.0","paths":{"/api/v1/orders/{id}":{"get":{},"head":{}},"/api/v1/orders":{"post":{}}}}`

func routes(paths ...string) gin.RoutesInfo {
	var rs gin.RoutesInfo
	for _, p := range paths {
		m, path, _ := strings.Cut(p, " ")
		rs = append(rs, gin.RouteInfo{Method: m, Path: path})
	}
	return rs
}

func isAPI(p string) bool { return strings.HasPrefix(p, "/api/") }

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		routes    gin.RoutesInfo
		want      string // substring of the error; empty means no error
	}{
		{"match, health ignored", doc, routes("GET /api/v1/orders/:id", "POST /api/v1/orders", "GET /healthz"), ""},
		{"undocumented route", doc, routes("GET /api/v1/orders/:id", "POST /api/v1/orders", "DELETE /api/v1/orders/:id"), "served but not documented: [DELETE /api/v1/orders/{id}]"},
		{"documented, not served", doc, routes("GET /api/v1/orders/:id"), "documented but not served: [POST /api/v1/orders]"},
		// pkg/server answers HEAD with the GET route: documenting it, or routing it, is optional.
		{"HEAD of a GET documented", headDoc, routes("GET /api/v1/orders/:id", "POST /api/v1/orders"), ""},
		{"HEAD of a GET routed", doc, routes("GET /api/v1/orders/:id", "HEAD /api/v1/orders/:id", "POST /api/v1/orders"), ""},
		{"HEAD without a GET, routed", doc, routes("GET /api/v1/orders/:id", "POST /api/v1/orders", "HEAD /api/v1/orders"), "served but not documented: [HEAD /api/v1/orders]"},
		{"HEAD without a GET, documented", headDoc, routes("POST /api/v1/orders"), "documented but not served: [GET /api/v1/orders/{id} HEAD /api/v1/orders/{id}]"},
		{"old version", `{"openapi":"3.0.3","paths":{}}`, nil, "want 3.1"},
		{"not json", `{`, nil, "openapi document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.doc), tc.routes, isAPI)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
