// Package ports exposes the payment queries over HTTP (gin). Payments are
// created by events, never by HTTP, so the API is read-only.
package ports

import (
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/page"
	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/services/payment/internal/app"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

//go:embed openapi.json
var OpenAPI []byte

type HTTP struct {
	app    app.Application
	userID func(*gin.Context) string
	log    *slog.Logger
}

// Register mounts the API on r; auth must reject unauthenticated requests
// and userID returns the verified subject (auth.UserID).
func Register(r gin.IRouter, a app.Application, auth gin.HandlerFunc, userID func(*gin.Context) string, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	h := &HTTP{app: a, userID: userID, log: log}
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", OpenAPI) })
	api := r.Group("/api/v1", auth, server.NoStore) // a user's payments: personal data
	api.GET("/payments", h.listPayments)
	api.GET("/payments/:id", h.getPayment)
}

type paymentJSON struct {
	ID          string    `json:"id"`
	OrderID     string    `json:"order_id"`
	Status      string    `json:"status"`
	AmountCents int64     `json:"amount_cents"`
	Currency    string    `json:"currency"`
	Reason      string    `json:"reason,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

func view(s payment.Snapshot) paymentJSON {
	return paymentJSON{ID: s.ID, OrderID: s.OrderID, Status: string(s.Status), AmountCents: s.AmountCents, Currency: s.Currency,
		Reason: s.Reason, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

func (h *HTTP) getPayment(c *gin.Context) {
	id, ok := uuidParam(c, "id", c.Param("id"))
	if !ok {
		return
	}
	s, err := h.app.GetPayment.Handle(c.Request.Context(), h.userID(c), id)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, view(s))
}

// listParams are the query parameters the listing reads; any other is a
// 400 naming it, as order's listing answers (server.UnknownParams): ignored,
// a misspelt ?orderId= listed every payment of the user as if they were the
// order's.
var listParams = []string{"order_id", "limit", "cursor"}

// listPayments takes the query parameters of order's listing (limit, cursor)
// and answers its shape (next_cursor), so a client pages both alike. Every
// problem of the query is named in one answer, as order's listing does: one
// at a time, a client fixing ?orderId=X&limit=0 learnt of the limit only on
// its second try.
func (h *HTTP) listPayments(c *gin.Context) {
	var q payment.ListQuery
	bad := server.UnknownParams(c, listParams...)
	// One order at most: gin's GetQuery reads the first of several, so
	// ?order_id=A&order_id=B (asking for either) listed A's alone, as if B
	// had not been asked for.
	if ids := c.QueryArray("order_id"); len(ids) > 1 {
		bad = append(bad, problem.FieldError{Field: "order_id", Detail: "must be given at most once"})
	} else if raw, ok := c.GetQuery("order_id"); ok {
		var fe *problem.FieldError
		if q.OrderID, fe = uuidField("order_id", raw); fe != nil {
			bad = append(bad, *fe)
		}
	}
	pg, pbad := page.Query(c, app.MaxPageSize)
	q.Limit, q.Cursor = pg.Limit, pg.Cursor
	if bad = append(bad, pbad...); len(bad) > 0 {
		problem.Abort(c, http.StatusBadRequest, "invalid query parameters", bad...)
		return
	}
	p, err := h.app.ListPayments.Handle(c.Request.Context(), h.userID(c), q)
	if err != nil {
		h.fail(c, err)
		return
	}
	out := struct {
		Payments   []paymentJSON `json:"payments"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}{Payments: make([]paymentJSON, len(p.Payments))}
	for i, s := range p.Payments {
		out.Payments[i] = view(s)
	}
	out.NextCursor = page.Cursor(p.Next)
	c.JSON(http.StatusOK, out)
}

// uuidParam rejects anything but a canonical UUID with a 400 naming field.
func uuidParam(c *gin.Context, field, raw string) (string, bool) {
	id, fe := uuidField(field, raw)
	if fe != nil {
		problem.Abort(c, http.StatusBadRequest, field+" must be a UUID", *fe)
		return "", false
	}
	return id, true
}

// uuidField is raw as a canonical UUID, or the problem naming field.
func uuidField(field, raw string) (string, *problem.FieldError) {
	u, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		return "", &problem.FieldError{Field: field, Detail: "must be a UUID"}
	}
	return u.String(), nil
}

func (h *HTTP) fail(c *gin.Context, err error) {
	// Work a context ended: 504 when the caller's deadline passed (not this
	// upstream's failure), else 503; never a 500.
	if deadline.Abort(c, err) {
		return
	}
	switch {
	case errors.Is(err, payment.ErrNotFound):
		problem.Abort(c, http.StatusNotFound, "no such payment")
	case database.Unavailable(err):
		// An outage of the database, not a bug: the client may retry.
		h.log.WarnContext(c.Request.Context(), "database unavailable", "path", c.FullPath(), "err", err)
		problem.Unavailable(c, database.RetryAfter, "the database is unavailable; try again shortly")
	default:
		h.log.ErrorContext(c.Request.Context(), "request failed", "path", c.FullPath(), "err", err)
		problem.Abort(c, http.StatusInternalServerError, "internal error")
	}
}
