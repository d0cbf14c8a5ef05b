package server

import (
	"net/http"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/problem"
)

// NoStore marks a route's answers, its problems included, and no other
// route's.
func TestNoStoreMarksEveryAnswerOfItsRoutes(t *testing.T) {
	s, _ := newTestServer(t, Options{})
	mine := s.Router().Group("/mine", NoStore)
	mine.GET("/ok", func(c *gin.Context) { c.JSON(http.StatusOK, gin.H{"id": 1}) })
	mine.GET("/missing", func(c *gin.Context) { problem.Abort(c, http.StatusNotFound, "no such thing") })
	s.Router().GET("/public", func(c *gin.Context) { c.Status(http.StatusOK) })
	for path, want := range map[string]string{"/mine/ok": "no-store", "/mine/missing": "no-store", "/public": ""} {
		if got := do(s.Handler(), http.MethodGet, path, nil).Header().Get("Cache-Control"); got != want {
			t.Errorf("GET %s: Cache-Control %q, want %q", path, got, want)
		}
	}
}
