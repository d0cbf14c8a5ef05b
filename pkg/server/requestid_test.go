package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"

	"github.com/gin-gonic/gin"
)

// TestGeneratedRequestIDIsOneAllocation: a request that comes without an id
// of its caller's gets one made, whose string and the response header's
// value holding it share one allocation (they took one each), beside the
// context node that carries it to the handlers and the logs.
func TestGeneratedRequestIDIsOneAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	gin.SetMode(gin.ReleaseMode)
	c, _ := gin.CreateTestContext(httptest.NewRecorder())
	c.Request = httptest.NewRequest(http.MethodGet, "/", nil)
	var ctx context.Context
	n := testing.AllocsPerRun(100, func() { ctx = withRequestID(c, context.Background()) })
	if n != 2 {
		t.Errorf("a generated request id takes %v allocations with its context node, want 2", n)
	}
	echo := c.Writer.Header()[canonicalRequestID]
	if id := RequestID(ctx); len(echo) != 1 || echo[0] != id || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("context has request id %q, response header %q", id, echo)
	}
	first := echo[0]
	withRequestID(c, context.Background())
	if again := c.Writer.Header()[canonicalRequestID][0]; again == first || first != RequestID(ctx) {
		t.Errorf("the next id %q changed or repeated the previous one %q", again, first)
	}
}
