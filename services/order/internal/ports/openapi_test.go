package ports_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/openapi"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/ports"
)

// TestOpenAPIMatchesRoutes keeps the document honest: every /api route the
// router serves is documented with the same method and path, nothing is
// documented that is not served, and /openapi.json serves the document.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	ports.Register(r, app.Application{}, func(c *gin.Context) { c.Next() }, func(*gin.Context) string { return "u" }, nil)
	isAPI := func(p string) bool { return strings.HasPrefix(p, "/api/") }
	if err := openapi.Check(ports.OpenAPI, r.Routes(), isAPI); err != nil {
		t.Fatal(err)
	}

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if w.Code != http.StatusOK || w.Body.String() != string(ports.OpenAPI) {
		t.Fatalf("/openapi.json: %d", w.Code)
	}
}
