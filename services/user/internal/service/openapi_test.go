package service_test

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/shanhai-dev/shanhai/services/user/internal/ports"
)

// The OpenAPI document and the gin routes must list the same operations: a
// route nobody documented, or a documented path that does not exist, fails.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string                    `json:"openapi"`
		Paths   map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(ports.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Fatalf("openapi = %q, want 3.1.x", doc.OpenAPI)
	}
	methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true, "patch": true, "head": true, "options": true}
	var documented []string
	for path, item := range doc.Paths {
		for m := range item {
			if methods[m] {
				documented = append(documented, strings.ToUpper(m)+" "+path)
			}
		}
	}

	h := newHarness(t, nil)
	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	var routed []string
	for _, r := range h.svc.Server.Router().Routes() {
		routed = append(routed, r.Method+" "+param.ReplaceAllString(r.Path, "{$1}"))
	}
	sort.Strings(documented)
	sort.Strings(routed)
	if strings.Join(documented, "\n") != strings.Join(routed, "\n") {
		t.Fatalf("OpenAPI and routes differ\ndocumented:\n  %s\nrouted:\n  %s",
			strings.Join(documented, "\n  "), strings.Join(routed, "\n  "))
	}

	// And the document is what /openapi.json serves.
	r := h.do("GET", "/openapi.json", "")
	if r.Code != 200 || string(r.Body) != string(ports.OpenAPI) {
		t.Fatalf("/openapi.json: %d", r.Code)
	}
}
