package service_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// TestReadTimeoutIsConfigured: READ_TIMEOUT reaches the server. An order
// whose body comes a byte every 10 ms (5 s in all) is cut off with 408 at
// the configured 200 ms; the server's 30 s default would have read it whole.
func TestReadTimeoutIsConfigured(t *testing.T) {
	// No telemetry: the server's shutdown would flush the provider the
	// package's other tests share.
	h := newHarnessConfig(t, func(c *config.Config) { c.ReadTimeout = 200 * time.Millisecond },
		func(o *service.Options) { o.Telemetry = nil })
	addr := testenv.ServeLoopback(t, h.svc.Server.Serve)

	const bodyBytes = 500
	status, n := testenv.SlowBody(t, addr, fmt.Sprintf("POST /api/v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nIdempotency-Key: %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{", h.token("alice"), svctest.Random(8), bodyBytes), 1, bodyBytes)
	if status != http.StatusRequestTimeout || n >= bodyBytes {
		t.Fatalf("status %d after %d of %d body bytes, want 408 before the body was complete", status, n, bodyBytes)
	}
}
