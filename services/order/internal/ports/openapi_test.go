package ports_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/openapi"
	"github.com/shanhai-dev/shanhai/pkg/openapi/openapitest"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
	"github.com/shanhai-dev/shanhai/services/order/internal/ports"
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
// wires it (deadline.Middleware), into the answers it gives when its time or
// its stores run out or fail, and checks that the document lists each status for
// that operation, as problem+json, with the Retry-After header when the answer
// sends one. The database being down is the error of a real dial to a closed
// port, the one database.Unavailable recognises, not a look-alike string.
func TestOpenAPIDocumentsEveryAnswer(t *testing.T) {
	gin.SetMode(gin.TestMode)
	answers, err := openapi.ParseAnswers(ports.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	refused := testenv.Refused(t)
	id := uuid.NewString()
	routes := []struct{ method, path, docPath, body string }{
		{"GET", "/api/v1/products", "/api/v1/products", ""},
		{"POST", "/api/v1/orders", "/api/v1/orders", `{"items":[{"sku":"TEA","quantity":1}]}`},
		{"GET", "/api/v1/orders", "/api/v1/orders", ""},
		{"GET", "/api/v1/orders/" + id, "/api/v1/orders/{id}", ""},
		{"POST", "/api/v1/orders/" + id + "/cancel", "/api/v1/orders/{id}/cancel", ""},
	}
	scenarios := []struct {
		name    string
		timeout string // X-Request-Timeout-Ms, "" for none
		stores  stores
		some    bool // only some routes reach the failing store; the others may answer 2xx or 4xx
	}{
		{"the caller's deadline had passed on arrival", "0", stores{}, false},
		{"the stores outlast the caller's deadline", "20", stores{err: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}, false},
		{"a store's own context was cancelled with time left", "", stores{err: func(context.Context) error { return fmt.Errorf("query: %w", context.Canceled) }}, false},
		{"the catalogue is empty", "", stores{catalog: catalog.ErrEmpty}, true},
		{"the database is down", "", stores{err: func(context.Context) error { return fmt.Errorf("query: %w", refused) }}, false},
		{"the database fails otherwise", "", stores{err: func(context.Context) error { return errors.New(`ERROR: relation "orders" does not exist`) }}, false},
	}
	for _, sc := range scenarios {
		r := gin.New()
		r.Use(deadline.Middleware(0))
		a := app.New(app.Deps{Orders: sc.stores, Catalog: sc.stores, NewID: uuid.NewString, Render: ports.Render})
		ports.Register(r, a, func(c *gin.Context) { c.Next() }, func(*gin.Context) string { return "u" }, nil)
		for _, rt := range routes {
			req := httptest.NewRequest(rt.method, rt.path, strings.NewReader(rt.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "k")
			if sc.timeout != "" {
				req.Header.Set(deadline.Header, sc.timeout)
			}
			w := httptest.NewRecorder()
			r.ServeHTTP(w, req)
			op := rt.method + " " + rt.docPath
			if w.Code < 500 {
				// A route that no longer reaches the failing store would no
				// longer test anything.
				if !sc.some {
					t.Errorf("%s: %s answers %d %s", sc.name, op, w.Code, w.Body)
				}
				continue
			}
			if err := answers.Check(rt.method, rt.docPath, w.Code, w.Header()); err != nil {
				t.Errorf("%s: %v", sc.name, err)
			}
		}
	}
}

// stores stands in for the order repository and the catalogue: err, when
// set, is what every call returns (given the call's context); catalog is the
// catalogue's error alone.
type stores struct {
	err     func(context.Context) error
	catalog error
}

func (s stores) fail(ctx context.Context) error {
	if s.err != nil {
		return s.err(ctx)
	}
	return nil
}

func (s stores) All(ctx context.Context) ([]catalog.Product, error) {
	if s.catalog != nil {
		return nil, s.catalog
	}
	if err := s.fail(ctx); err != nil {
		return nil, err
	}
	return []catalog.Product{{SKU: "TEA", Name: "Tea", PriceCents: 100, Currency: "EUR"}}, nil
}

func (s stores) Create(ctx context.Context, _ *order.Order, _ order.Replay) error { return s.fail(ctx) }

func (s stores) FindReplay(ctx context.Context, _, _ string) (order.Replay, error) {
	if err := s.fail(ctx); err != nil {
		return order.Replay{}, err
	}
	return order.Replay{}, order.ErrNotFound
}

func (s stores) Get(ctx context.Context, _, _ string) (*order.Order, error) {
	if err := s.fail(ctx); err != nil {
		return nil, err
	}
	return nil, order.ErrNotFound
}

func (s stores) List(ctx context.Context, _ string, _ order.ListQuery) ([]*order.Order, string, error) {
	return nil, "", s.fail(ctx)
}

func (s stores) Update(ctx context.Context, _, _ string, _ func(*order.Order) error) (*order.Order, error) {
	if err := s.fail(ctx); err != nil {
		return nil, err
	}
	return nil, order.ErrNotFound
}

func (s stores) ApplyOnce(ctx context.Context, _, _, _ string, _ func(*order.Order) error) (bool, error) {
	return false, s.fail(ctx)
}

func (s stores) ExpirePending(ctx context.Context, _ time.Time, _ int, _ func(*order.Order) error) (int, error) {
	return 0, s.fail(ctx)
}
