package ports_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/ports"
)

// TestOpenAPIMatchesRoutes keeps the document honest: every /api route the
// router serves is documented with the same method and path, and nothing is
// documented that is not served.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	ports.Register(r, app.Application{}, func(c *gin.Context) { c.Next() }, func(*gin.Context) string { return "u" }, nil)

	param := regexp.MustCompile(`:([A-Za-z_]+)`)
	var served []string
	for _, rt := range r.Routes() {
		if strings.HasPrefix(rt.Path, "/api/") {
			served = append(served, rt.Method+" "+param.ReplaceAllString(rt.Path, "{$1}"))
		}
	}

	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(ports.OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi version %q, want 3.1.x", doc.OpenAPI)
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "post", "put", "patch", "delete", "head", "options":
				documented = append(documented, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	if !slices.Equal(served, documented) {
		t.Fatalf("routes and OpenAPI differ\nserved:     %v\ndocumented: %v", served, documented)
	}

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/openapi.json", nil))
	if w.Code != http.StatusOK || w.Body.String() != string(ports.OpenAPI) {
		t.Fatalf("/openapi.json: %d", w.Code)
	}
}
