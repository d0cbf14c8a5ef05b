package openapitest

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"
)

const doc = `{"openapi":"3.1.0","info":{"title":"t","version":"1"},"paths":{"/api/v1/things":{"get":{"responses":{"200":{"description":"ok"}}}}}}`

// recorder is a testing.TB that records a failure instead of ending the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Fatal(...any)          { r.failed = true; panic(r) }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; panic(r) }

// check runs MatchesRoutes on a recorder and reports whether it failed.
func check(t *testing.T, r *gin.Engine) (failed bool) {
	rec := &recorder{TB: t}
	defer func() {
		if p := recover(); p != nil && p != rec {
			panic(p)
		}
		failed = rec.failed
	}()
	MatchesRoutes(rec, []byte(doc), r, API)
	return false
}

func router(serveDoc string, routes ...string) *gin.Engine {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	for _, p := range routes {
		r.GET(p, func(c *gin.Context) { c.Status(http.StatusOK) })
	}
	r.GET("/healthz", func(c *gin.Context) { c.Status(http.StatusOK) })
	if serveDoc != "" {
		r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", []byte(serveDoc)) })
	}
	return r
}

// TestMatchesRoutesFailsOnEveryDrift: it passes on a router that serves
// what the document lists, and the document; it fails on an undocumented
// route, a documented one not served, and a document not served or not the
// same.
func TestMatchesRoutesFailsOnEveryDrift(t *testing.T) {
	if check(t, router(doc, "/api/v1/things")) {
		t.Fatal("failed on a router that matches its document")
	}
	for name, r := range map[string]*gin.Engine{
		"undocumented route":     router(doc, "/api/v1/things", "/api/v1/more"),
		"documented, not served": router(doc),
		"document not served":    router("", "/api/v1/things"),
		"another document":       router(`{}`, "/api/v1/things"),
	} {
		if !check(t, r) {
			t.Errorf("%s: passed", name)
		}
	}
}
