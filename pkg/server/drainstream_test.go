package server

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// TestDrainCutOffDuringTheResponseIsAnError: a response still streaming (a large download, an export) when the drain
// deadline passes is cut by the shutdown closing its connection. Its status had gone out, so the access log wrote a
// DEBUG line with status 200, a success, for a body the client never got whole. It is the drain's cut-off as for any
// other request it ends: ERROR with ended_by "drain deadline" (and the status that was sent).
func TestDrainCutOffDuringTheResponseIsAnError(t *testing.T) {
	s, logs := newTestServer(t, Options{ShutdownTimeout: 300 * time.Millisecond})
	started, handled := make(chan struct{}), make(chan struct{})
	s.Router().GET("/export", func(c *gin.Context) {
		defer close(handled) // the access log runs once this returns: wait for it below
		c.Status(http.StatusOK)
		for i := range 1000 { // 10 s at a chunk per 10 ms: far past the drain deadline
			if _, err := c.Writer.WriteString(`{"row":1}` + "\n"); err != nil {
				return
			}
			c.Writer.Flush()
			if i == 0 {
				close(started)
			}
			select {
			case <-c.Request.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := serveStarting(t, s, ctx)
	go func() {
		if resp, err := http.Get("http://" + addr + "/export"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Serve returned no error: the drain did not cut the export off")
	}
	<-handled
	line := regexp.MustCompile(`.*"msg":"request".*"route":"/export".*`)
	for end := time.Now().Add(5 * time.Second); line.FindString(logs.String()) == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("request not in the access log:\n%s", logs)
		}
	}
	if got := line.FindString(logs.String()); !regexp.MustCompile(`"level":"ERROR".*"status":200.*"ended_by":"drain deadline"`).MatchString(got) {
		t.Fatalf("access log of an export the drain cut off: %s\nwant ERROR, the status sent (200), ended_by drain deadline", got)
	}
}
