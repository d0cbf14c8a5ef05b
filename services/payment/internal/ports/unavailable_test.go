package ports_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/ports"
)

// TestADatabaseThatIsDownAnswers503: a payment read whose store cannot reach PostgreSQL (the dial refused, as the
// pool reports a server that is down) is a dependency's outage, answered 503 problem+json with a Retry-After and
// logged once at WARN with the cause; it was a 500 "internal error", a bug by its status.
func TestADatabaseThatIsDownAnswers503(t *testing.T) {
	gin.SetMode(gin.TestMode)
	down := testenv.Refused(t)
	logs := &testenv.LogBuffer{}
	r := gin.New()
	r.Use(deadline.Middleware(0))
	payments := failingPayments{func(context.Context) error { return fmt.Errorf("get payment: %w", down) }}
	ports.Register(r, app.New(app.Deps{Payments: payments}), func(c *gin.Context) { c.Next() },
		func(*gin.Context) string { return "u" }, telemetry.NewLogger(logs, slog.LevelDebug))

	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/payments/"+uuid.NewString(), nil))
	if w.Code != http.StatusServiceUnavailable || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") {
		t.Fatalf("GET a payment with the database down: %d %q %s, want 503 problem+json", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if lines := strings.Split(strings.TrimSpace(logs.String()), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], `"level":"WARN"`) || !strings.Contains(lines[0], "connection refused") {
		t.Errorf("want one WARN line with the cause, got:\n%s", logs)
	}
}
