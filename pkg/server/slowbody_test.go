package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestSlowBodyIsCutOff has a client on a real connection send its body a byte every 10 ms, as an attacker holding
// connections open does. The server stops reading at ReadTimeout and answers 408, long before the body is complete;
// before, nothing bounded the body, and the handler goroutine waited for all of it.
func TestSlowBodyIsCutOff(t *testing.T) {
	const bodyBytes = 500 // 5 s at a byte per 10 ms
	s, logs := newTestServer(t, Options{ReadTimeout: 200 * time.Millisecond})
	s.Router().POST("/orders", func(c *gin.Context) {
		var v map[string]any
		if DecodeJSON(c, &v) {
			c.Status(http.StatusCreated)
		}
	})
	addr := testenv.ServeLoopback(t, s.Serve)

	status, n := testenv.SlowBody(t, addr, fmt.Sprintf("POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n[", bodyBytes), 1, bodyBytes)
	if status != http.StatusRequestTimeout || n >= bodyBytes {
		t.Fatalf("status %d after %d of %d body bytes, want 408 before the body was complete", status, n, bodyBytes)
	}
	if strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("a client's slow body logged as a server error:\n%s", logs)
	}
}

// TestReadTimeoutLeavesAHandlerThatReadItsBody: the bound is on reading only. A handler that has read its body and
// then works past ReadTimeout keeps its context and its response reaches the client.
func TestReadTimeoutLeavesAHandlerThatReadItsBody(t *testing.T) {
	const readTimeout = 100 * time.Millisecond
	s, logs := newTestServer(t, Options{ReadTimeout: readTimeout})
	s.Router().POST("/orders", func(c *gin.Context) {
		var v map[string]any
		if !DecodeJSON(c, &v) {
			return
		}
		time.Sleep(3 * readTimeout)
		if err := c.Request.Context().Err(); err != nil {
			t.Errorf("the handler's context ended past ReadTimeout: %v", err)
		}
		c.String(http.StatusCreated, "created")
	})
	addr := testenv.ServeLoopback(t, s.Serve)
	res, err := http.Post("http://"+addr+"/orders", "application/json", strings.NewReader(`{"a":1}`))
	if err != nil {
		t.Fatalf("POST: %v\n%s", err, logs)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusCreated || string(body) != "created" {
		t.Fatalf("status %d, body %q (%v), want 201 created", res.StatusCode, body, err)
	}
}
