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

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/app"
	"github.com/shanhai-dev/shanhai/services/user/internal/domain/user"
	"github.com/shanhai-dev/shanhai/services/user/internal/ports"
)

// TestADatabaseThatIsDownAnswers503: a sign-up whose account lookup cannot reach PostgreSQL (the dial refused, as the
// pool reports a server that is down) is a dependency's outage, answered 503 problem+json with a Retry-After and
// logged once at WARN with the cause; it was a 500 "internal error", a bug by its status.
func TestADatabaseThatIsDownAnswers503(t *testing.T) {
	gin.SetMode(gin.TestMode)
	down := testenv.Refused(t)
	logs := &testenv.LogBuffer{}
	r := gin.New()
	r.Use(deadline.Middleware(0))
	a := app.New(app.Deps{Users: downUsers{down}, Signups: admitAll{}, Logger: slog.New(slog.DiscardHandler)})
	ports.HTTP{App: a, Logger: telemetry.NewLogger(logs, slog.LevelDebug)}.Mount(r)

	req := httptest.NewRequest(http.MethodPost, "/api/v1/users",
		strings.NewReader(`{"email":"ada@example.com","password":"a long enough passphrase 42","name":"Ada"}`))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	r.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/problem+json") {
		t.Fatalf("sign-up with the database down: %d %q %s, want 503 problem+json", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if got := w.Header().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After %q, want 1", got)
	}
	if lines := strings.Split(strings.TrimSpace(logs.String()), "\n"); len(lines) != 1 ||
		!strings.Contains(lines[0], `"level":"WARN"`) || !strings.Contains(lines[0], "connection refused") {
		t.Errorf("want one WARN line with the cause, got:\n%s", logs)
	}
}

// downUsers is an account store whose database is down: every call fails with err, as the adapter wraps it.
type downUsers struct{ err error }

func (d downUsers) Add(context.Context, user.User) error { return fmt.Errorf("add user: %w", d.err) }
func (d downUsers) ByID(context.Context, string) (user.User, error) {
	return user.User{}, fmt.Errorf("user by id: %w", d.err)
}
func (d downUsers) ByEmail(context.Context, string) (user.User, error) {
	return user.User{}, fmt.Errorf("user by email: %w", d.err)
}
func (d downUsers) EmailTaken(context.Context, string) (bool, error) {
	return false, fmt.Errorf("look up email: %w", d.err)
}
func (d downUsers) Update(context.Context, string, func(*user.User) error) (user.User, error) {
	return user.User{}, fmt.Errorf("update user: %w", d.err)
}
func (d downUsers) SetPasswordHash(context.Context, string, string, string) error {
	return fmt.Errorf("set password hash: %w", d.err)
}

// admitAll lets every sign-up through its per-IP limit.
type admitAll struct{}

func (admitAll) Admit(context.Context, string) error { return nil }
