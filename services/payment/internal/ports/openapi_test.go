package ports_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/openapi"
	"github.com/shanhai-dev/shanhai/pkg/openapi/openapitest"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
	"github.com/shanhai-dev/shanhai/services/payment/internal/ports"
)

// TestOpenAPIMatchesRoutes keeps the document honest: every /api route the
// router serves is documented with the same method and path, nothing is
// documented that is not served, and /openapi.json serves the document.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	ports.Register(r, app.Application{}, func(c *gin.Context) { c.Next() }, func(*gin.Context) string { return "u" }, nil)
	openapitest.MatchesRoutes(t, ports.OpenAPI, r, openapitest.API)
}

// TestOpenAPIDocumentsEveryAnswer drives each API route, wired as pkg/server
// wires it (deadline.Middleware), into the answers it gives when its time
// runs out or its database is down or fails, and checks that the document
// lists each status for that operation, as problem+json, with the Retry-After
// header when the answer sends one. The database being down is the error of a
// real dial to a closed port, the one database.Unavailable recognises, not a
// look-alike string.
func TestOpenAPIDocumentsEveryAnswer(t *testing.T) {
	gin.SetMode(gin.TestMode)
	answers, err := openapi.ParseAnswers(ports.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	refused := testenv.Refused(t)
	routes := []struct{ path, docPath string }{
		{"/api/v1/payments", "/api/v1/payments"},
		{"/api/v1/payments?order_id=" + uuid.NewString(), "/api/v1/payments"},
		{"/api/v1/payments/" + uuid.NewString(), "/api/v1/payments/{id}"},
	}
	scenarios := []struct {
		name    string
		timeout string // X-Request-Timeout-Ms, "" for none
		err     func(context.Context) error
	}{
		{"the caller's deadline had passed on arrival", "0", nil},
		{"the database outlasts the caller's deadline", "20", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }},
		{"an inner timeout fired with time left", "", func(context.Context) error { return fmt.Errorf("query: %w", context.DeadlineExceeded) }},
		{"the database is down", "", func(context.Context) error { return fmt.Errorf("query: %w", refused) }},
		{"the database fails otherwise", "", func(context.Context) error { return errors.New(`ERROR: relation "payments" does not exist`) }},
	}
	for _, sc := range scenarios {
		r := gin.New()
		r.Use(deadline.Middleware(0))
		ports.Register(r, app.New(app.Deps{Payments: failingPayments{sc.err}}), func(c *gin.Context) { c.Next() }, func(*gin.Context) string { return "u" }, nil)
		for _, rt := range routes {
			req := httptest.NewRequest(http.MethodGet, rt.path, nil)
			if sc.timeout != "" {
				req.Header.Set(deadline.Header, sc.timeout)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			if w.Code < 500 {
				t.Errorf("%s: GET %s answers %d", sc.name, rt.path, w.Code)
				continue
			}
			if err := answers.Check(http.MethodGet, rt.docPath, w.Code, w.Header()); err != nil {
				t.Errorf("%s: %v", sc.name, err)
			}
		}
	}
}

// failingPayments is a payment repository whose every call returns err
// (given the call's context).
type failingPayments struct{ err func(context.Context) error }

func (f failingPayments) fail(ctx context.Context) error {
	if f.err == nil {
		return nil
	}
	return f.err(ctx)
}

func (f failingPayments) Claim(ctx context.Context, _ *payment.Payment) (*payment.Payment, error) {
	return nil, f.fail(ctx)
}

func (f failingPayments) Complete(ctx context.Context, _ *payment.Payment) (bool, bool, error) {
	return false, false, f.fail(ctx)
}

func (f failingPayments) RequestCancel(ctx context.Context, _ *payment.Payment) (bool, error) {
	return false, f.fail(ctx)
}

func (f failingPayments) SaveRefund(ctx context.Context, _ *payment.Payment) (bool, error) {
	return false, f.fail(ctx)
}

func (f failingPayments) Get(ctx context.Context, _, _ string) (*payment.Payment, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return nil, payment.ErrNotFound
}

func (f failingPayments) List(ctx context.Context, _ string, _ payment.ListQuery) ([]*payment.Payment, string, error) {
	return nil, "", f.fail(ctx)
}

func (f failingPayments) SaveDeadLetter(ctx context.Context, _ payment.DeadLetter) error {
	return f.fail(ctx)
}

func (f failingPayments) ChargeDeadLettered(ctx context.Context, _ string) (bool, error) {
	return false, f.fail(ctx)
}

func (f failingPayments) ByOrder(ctx context.Context, _ string) (*payment.Payment, error) {
	if err := f.fail(ctx); err != nil {
		return nil, err
	}
	return nil, payment.ErrNotFound
}

func (f failingPayments) DeleteSettledDeadLetters(ctx context.Context, _ time.Time, _ int) (int, error) {
	return 0, f.fail(ctx)
}

func (f failingPayments) SaveRefundDeclined(ctx context.Context, _ *payment.Payment) (bool, error) {
	return false, f.fail(ctx)
}

func (f failingPayments) Unsettled(ctx context.Context, _ int) ([]*payment.Payment, error) {
	return nil, f.fail(ctx)
}
