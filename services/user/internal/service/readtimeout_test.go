package service_test

import (
	"fmt"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"net/http"
	"testing"
)

// TestReadTimeoutIsConfigured: READ_TIMEOUT reaches the server. A sign-up
// whose body comes a byte every 10 ms (5 s in all) is cut off with 408 at
// the configured 200 ms; the server's 30 s default would have read it whole.
func TestReadTimeoutIsConfigured(t *testing.T) {
	h := newHarness(t, map[string]string{"READ_TIMEOUT": "200ms"})
	addr := testenv.ServeLoopback(t, h.svc.Server.Serve)

	const bodyBytes = 500
	status, n := testenv.SlowBody(t, addr, fmt.Sprintf("POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", bodyBytes), 1, bodyBytes)
	if status != http.StatusRequestTimeout || n >= bodyBytes {
		t.Fatalf("status %d after %d of %d body bytes, want 408 before the body was complete", status, n, bodyBytes)
	}
}
