package service_test

import (
	"testing"

	"github.com/shanhai-dev/shanhai/pkg/openapi"
	"github.com/shanhai-dev/shanhai/services/user/internal/ports"
)

// The OpenAPI document and the gin routes must list the same operations: a
// route nobody documented, or a documented path that does not exist, fails.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h := newHarness(t, nil)
	if err := openapi.Check(ports.OpenAPI, h.svc.Server.Router().Routes(), nil); err != nil {
		t.Fatal(err)
	}

	// And the document is what /openapi.json serves.
	r := h.do("GET", "/openapi.json", "")
	if r.Code != 200 || string(r.Body) != string(ports.OpenAPI) {
		t.Fatalf("/openapi.json: %d", r.Code)
	}
}
