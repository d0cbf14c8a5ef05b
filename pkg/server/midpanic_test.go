package server

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

// TestPanicAfterTheHeaderCutsTheResponse: a handler that panics once its status and part of its body are on the wire
// (a streamed listing, a large export) left recovery nothing to send, and the handler returning normally let net/http
// end the response as complete: the chunked body's last chunk, the connection kept alive. The client read a 200 with a
// truncated body as the whole answer. Now the response is cut, so the client sees an unexpected end of the body, and
// the panic is still logged and the request recorded as a 500.
func TestPanicAfterTheHeaderCutsTheResponse(t *testing.T) {
	s, logs := newTestServer(t, Options{})
	s.Router().GET("/stream", func(c *gin.Context) {
		c.Status(http.StatusOK)
		_, _ = c.Writer.WriteString(`[{"id":1},`)
		c.Writer.Flush()
		panic("row 2 broke")
	})
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := serveStarting(t, s, ctx)
	defer func() { cancel(); <-done }()

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	if _, err := io.WriteString(conn, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("status %d, body %q read to a clean end: a truncated response looks complete", resp.StatusCode, body)
	}
	if !strings.Contains(logs.String(), `"msg":"panic in handler"`) || !strings.Contains(logs.String(), "row 2 broke") {
		t.Errorf("panic not logged:\n%s", logs)
	}
	for end := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), `"route":"/stream"`); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("request not in the access log:\n%s", logs)
		}
	}
	if !regexp.MustCompile(`"level":"ERROR","msg":"request".*"route":"/stream".*"ended_by":"handler panic"`).MatchString(logs.String()) {
		t.Errorf("the cut response is not an error in the access log:\n%s", logs)
	}
}
