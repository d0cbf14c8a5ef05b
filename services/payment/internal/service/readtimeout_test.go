package service_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/payment/internal/config"
	"github.com/shanhai-dev/shanhai/services/payment/internal/service"
)

// TestReadTimeoutIsConfigured: READ_TIMEOUT reaches the server. No payment
// route reads a body, but net/http reads what a handler left unread before
// it answers (so the connection can serve the next request): a body that
// comes a byte every 10 ms (5 s in all) held the answer until its last byte.
// At the configured 200 ms that read is cut off and the answer goes out,
// long before the body is complete; headers alone keep net/http's fixed 10 s
// bound (pkg/server's ReadHeaderTimeout), whatever READ_TIMEOUT says.
func TestReadTimeoutIsConfigured(t *testing.T) {
	// No telemetry: the server's shutdown would flush the provider the
	// package's other tests share.
	h := newHarnessOptions(t, func(c *config.Config) { c.ReadTimeout = 200 * time.Millisecond },
		func(o *service.Options) { o.Telemetry = nil })
	addr := testenv.ServeLoopback(t, h.svc.Server.Serve)

	const bodyBytes = 500
	status, n := testenv.SlowBody(t, addr, fmt.Sprintf("GET /api/v1/payments HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", h.token("alice"), bodyBytes), 0, bodyBytes)
	if status != http.StatusOK || n >= bodyBytes {
		t.Fatalf("status %d after %d of %d body bytes, want 200 before the body was complete", status, n, bodyBytes)
	}
}
