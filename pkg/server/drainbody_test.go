package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// TestDrainCutOffDuringTheBodyIsTheServers: a request still sending its body when the drain deadline passes is cut off
// by the shutdown, which closes its connection. DecodeJSON's read then failed with "use of closed network connection"
// and it answered 400 ("request body could not be decoded"): the access log had a DEBUG line with status 400 and the
// metrics a client error, for a request the server ended and no client received an answer to. It is the drain's
// cut-off, as for any other request it ends: ERROR, ended_by "drain deadline", 503.
func TestDrainCutOffDuringTheBodyIsTheServers(t *testing.T) {
	s, logs := newTestServer(t, Options{ShutdownTimeout: 300 * time.Millisecond})
	started, handled := make(chan struct{}), make(chan struct{})
	s.Router().POST("/upload", func(c *gin.Context) {
		defer close(handled) // the access log runs once this returns: wait for it below
		close(started)
		var v []int
		if DecodeJSON(c, &v) {
			c.Status(http.StatusCreated)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := serveStarting(t, s, ctx)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const parts = 1000 // 10 s at two bytes per 10 ms: far past the drain deadline
	if _, err := fmt.Fprintf(conn, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n[", 1+2*parts); err != nil {
		t.Fatal(err)
	}
	go func() {
		for range parts {
			if _, err := io.WriteString(conn, "1,"); err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-started
	cancel()
	if err := <-done; err == nil {
		t.Fatal("Serve returned no error: the drain did not cut the upload off")
	}
	<-handled
	line := regexp.MustCompile(`.*"msg":"request".*"route":"/upload".*`)
	for end := time.Now().Add(5 * time.Second); line.FindString(logs.String()) == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("request not in the access log:\n%s", logs)
		}
	}
	got := line.FindString(logs.String())
	if !regexp.MustCompile(`"level":"ERROR".*"status":503.*"ended_by":"drain deadline"`).MatchString(got) {
		t.Fatalf("access log of an upload the drain cut off: %s\nwant ERROR, status 503, ended_by drain deadline", got)
	}
}
