package limit_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/gin-gonic/gin"
	"github.com/shanhai-dev/shanhai/pkg/limit"
)

func ExampleMiddleware() {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	// 1 request per second per client IP, bursts of 2.
	r.Use(limit.Middleware(limit.PerKey(1, 2), func(c *gin.Context) string { return c.ClientIP() }, limit.Policy("per-ip")))
	r.GET("/", func(c *gin.Context) { c.Status(http.StatusNoContent) })

	for range 3 {
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		fmt.Printf("%d RateLimit: %s Retry-After: %q\n", w.Code, w.Header().Get("RateLimit"), w.Header().Get("Retry-After"))
	}
	// Output:
	// 204 RateLimit: "per-ip";r=1;t=1 Retry-After: ""
	// 204 RateLimit: "per-ip";r=0;t=2 Retry-After: ""
	// 429 RateLimit: "per-ip";r=0;t=2 Retry-After: "1"
}
