// Package openapitest holds the check every service's tests make of its
// OpenAPI document against the router that serves it. The services are
// separate modules, so a check they share can only live in pkg.
package openapitest

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/openapi"
)

// API keeps the /api/ routes, the ones a document lists (health, metrics
// and /openapi.json itself stay undocumented).
func API(path string) bool { return strings.HasPrefix(path, "/api/") }

// MatchesRoutes fails t unless doc lists exactly the operations r serves
// (openapi.Check, over the routes keep accepts; nil keeps all) and r serves
// doc itself at /openapi.json, so the document cannot drift from the code.
func MatchesRoutes(t testing.TB, doc []byte, r *gin.Engine, keep func(path string) bool) {
	t.Helper()
	if err := openapi.Check(doc, r.Routes(), keep); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if w.Code != http.StatusOK || w.Body.String() != string(doc) {
		t.Fatalf("/openapi.json: %d, the document served: %v", w.Code, w.Body.String() == string(doc))
	}
}
