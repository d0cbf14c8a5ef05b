// Package ports exposes the order use cases over HTTP (gin). Handlers only
// translate: request → command, result → JSON, domain error → problem+json.
package ports

import (
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/deadline"
	"github.com/shanhai-dev/shanhai/pkg/page"
	"github.com/shanhai-dev/shanhai/pkg/problem"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/services/order/internal/app"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

//go:embed openapi.json
var OpenAPI []byte

// IdempotencyKeyHeader is required on POST /api/v1/orders.
const IdempotencyKeyHeader = "Idempotency-Key"

// maxKeyLen bounds what we store per key; UUIDs and ULIDs fit comfortably.
const maxKeyLen = 255

// HTTP holds the handlers.
type HTTP struct {
	app    app.Application
	userID func(*gin.Context) string
	log    *slog.Logger
}

// Register mounts the API on r. auth must reject unauthenticated requests;
// userID returns the verified subject it stored (auth.UserID).
func Register(r gin.IRouter, a app.Application, auth gin.HandlerFunc, userID func(*gin.Context) string, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	h := &HTTP{app: a, userID: userID, log: log}
	r.GET("/openapi.json", func(c *gin.Context) { c.Data(http.StatusOK, "application/json", OpenAPI) })
	api := r.Group("/api/v1", auth)
	api.GET("/products", h.listProducts)
	// A user's orders are kept out of every cache (personal data); the
	// catalogue, the same for everyone, is left cacheable.
	orders := api.Group("/orders", server.NoStore)
	orders.POST("", h.createOrder)
	orders.GET("", h.listOrders)
	orders.GET("/:id", h.getOrder)
	orders.POST("/:id/cancel", h.cancelOrder)
}

type productJSON struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
}

func (h *HTTP) listProducts(c *gin.Context) {
	if bad := server.UnknownParams(c); len(bad) > 0 {
		problem.Abort(c, http.StatusBadRequest, "invalid query parameters", bad...)
		return
	}
	ps, err := h.app.ListProducts.Handle(c.Request.Context())
	if err != nil {
		h.fail(c, err)
		return
	}
	out := make([]productJSON, len(ps))
	for i, p := range ps {
		out[i] = productJSON(p)
	}
	c.JSON(http.StatusOK, gin.H{"products": out})
}

type createOrderRequest struct {
	Items []struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
		// UnitPriceCents is accepted so a client may echo a product listing
		// back, and then ignored: prices come only from the catalogue.
		UnitPriceCents *int64 `json:"unit_price_cents,omitempty"`
	} `json:"items"`
}

func (h *HTTP) createOrder(c *gin.Context) {
	key := c.GetHeader(IdempotencyKeyHeader)
	switch {
	case len(c.Request.Header.Values(IdempotencyKeyHeader)) > 1:
		// GetHeader reads the first line: which key made the order would
		// depend on the order of the lines, and a retry through a proxy
		// that kept the other one made a second order.
		problem.Abort(c, http.StatusBadRequest, "only one Idempotency-Key header may be sent",
			problem.FieldError{Field: IdempotencyKeyHeader, Detail: "must be given once"})
		return
	case key == "":
		problem.Abort(c, http.StatusBadRequest, "an Idempotency-Key header is required to create an order",
			problem.FieldError{Field: IdempotencyKeyHeader, Detail: "is required"})
		return
	case len(key) > maxKeyLen:
		problem.Abort(c, http.StatusBadRequest, "Idempotency-Key is too long",
			problem.FieldError{Field: IdempotencyKeyHeader, Detail: "must be at most " + strconv.Itoa(maxKeyLen) + " bytes"})
		return
	case !printableASCII(key):
		// Keys are stored as text; bytes a database would refuse (invalid
		// UTF-8) must be a 400 here, not a failed insert later.
		problem.Abort(c, http.StatusBadRequest, "Idempotency-Key must be printable ASCII",
			problem.FieldError{Field: IdempotencyKeyHeader, Detail: "must contain only printable ASCII characters"})
		return
	}
	var req createOrderRequest
	if !server.DecodeJSON(c, &req) {
		return
	}
	cmd := app.CreateOrder{UserID: h.userID(c), IdempotencyKey: key, Items: make([]order.Requested, len(req.Items))}
	for i, it := range req.Items {
		cmd.Items[i] = order.Requested{SKU: it.SKU, Quantity: it.Quantity}
	}
	res, err := h.app.CreateOrder.Handle(c.Request.Context(), cmd)
	if err != nil {
		h.fail(c, err)
		return
	}
	if res.Replayed {
		c.Header("Idempotent-Replayed", "true")
	}
	var created struct{ ID string }
	if json.Unmarshal(res.Body, &created) == nil && created.ID != "" {
		c.Header("Location", "/api/v1/orders/"+created.ID)
	}
	c.Data(res.StatusCode, "application/json; charset=utf-8", res.Body)
}

func (h *HTTP) getOrder(c *gin.Context) {
	id, ok := orderID(c)
	if !ok {
		return
	}
	s, err := h.app.GetOrder.Handle(c.Request.Context(), h.userID(c), id)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, view(s))
}

func (h *HTTP) cancelOrder(c *gin.Context) {
	id, ok := orderID(c)
	if !ok {
		return
	}
	s, err := h.app.CancelOrder.Handle(c.Request.Context(), h.userID(c), id)
	if err != nil {
		h.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, view(s))
}

func (h *HTTP) listOrders(c *gin.Context) {
	bad := server.UnknownParams(c, listParams...)
	pg, pbad := page.Query(c, app.MaxPageSize)
	bad = append(bad, pbad...)
	q := order.ListQuery{Limit: pg.Limit, Cursor: pg.Cursor}
	// One status at most: gin's Query reads the first of several, so a
	// second one (?status=PAID&status=FAILED, asking for either) was
	// dropped without a word and the answer listed only the first.
	if ss := c.QueryArray("status"); len(ss) > 1 {
		bad = append(bad, problem.FieldError{Field: "status", Detail: "must be given at most once"})
	} else if s := c.Query("status"); s != "" {
		st, ok := order.ParseStatus(s)
		if !ok {
			bad = append(bad, problem.FieldError{Field: "status", Detail: "must be one of PENDING, PAID, FAILED, CANCELLED"})
		}
		q.Status = st
	}
	if len(bad) > 0 {
		problem.Abort(c, http.StatusBadRequest, "invalid query parameters", bad...)
		return
	}
	p, err := h.app.ListOrders.Handle(c.Request.Context(), h.userID(c), q)
	if err != nil {
		h.fail(c, err)
		return
	}
	out := struct {
		Orders     []orderJSON `json:"orders"`
		NextCursor string      `json:"next_cursor,omitempty"`
	}{Orders: make([]orderJSON, len(p.Orders))}
	for i, s := range p.Orders {
		out.Orders[i] = view(s)
	}
	out.NextCursor = page.Cursor(p.Next)
	c.JSON(http.StatusOK, out)
}

// listParams are the query parameters the listing reads.
var listParams = []string{"status", "limit", "cursor"}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// orderID validates the path id; anything but a UUID is a 400 naming "id"
// rather than a query that cannot match.
func orderID(c *gin.Context) (string, bool) {
	id := c.Param("id")
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 {
		problem.Abort(c, http.StatusBadRequest, "order id must be a UUID", problem.FieldError{Field: "id", Detail: "must be a UUID"})
		return "", false
	}
	return u.String(), true
}

// fail maps domain errors to problems. Anything unexpected is logged with
// the trace id and answered 500 without internals.
func (h *HTTP) fail(c *gin.Context, err error) {
	// Work a context ended: 504 when the caller's deadline passed (not this
	// upstream's failure), else 503; never a 500.
	if deadline.Abort(c, err) {
		return
	}
	var verr *order.ValidationError
	switch {
	case errors.As(err, &verr):
		fields := make([]problem.FieldError, len(verr.Fields))
		for i, f := range verr.Fields {
			fields[i] = problem.FieldError{Field: f.Field, Detail: f.Detail}
		}
		problem.Abort(c, http.StatusUnprocessableEntity, "the order is invalid", fields...)
	case errors.Is(err, order.ErrKeyReused):
		problem.Abort(c, http.StatusUnprocessableEntity, "this Idempotency-Key was already used with a different request",
			problem.FieldError{Field: IdempotencyKeyHeader, Detail: "reused with a different request body"})
	case errors.Is(err, order.ErrNotFound):
		problem.Abort(c, http.StatusNotFound, "no such order")
	case errors.Is(err, order.ErrNotPending):
		problem.Abort(c, http.StatusConflict, "only a PENDING order can be cancelled")
	case errors.Is(err, catalog.ErrEmpty):
		problem.Abort(c, http.StatusServiceUnavailable, "the product catalogue is not loaded")
	case database.Unavailable(err):
		// An outage of the database, not a bug: the client may retry.
		h.log.WarnContext(c.Request.Context(), "database unavailable", "path", c.FullPath(), "err", err)
		problem.Unavailable(c, database.RetryAfter, "the database is unavailable; try again shortly")
	default:
		h.log.ErrorContext(c.Request.Context(), "request failed", "path", c.FullPath(), "err", err)
		problem.Abort(c, http.StatusInternalServerError, "internal error")
	}
}

type itemJSON struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int    `json:"quantity"`
	UnitPriceCents int64  `json:"unit_price_cents"`
	LineTotalCents int64  `json:"line_total_cents"`
}

type orderJSON struct {
	ID            string     `json:"id"`
	Status        string     `json:"status"`
	Items         []itemJSON `json:"items"`
	TotalCents    int64      `json:"total_cents"`
	Currency      string     `json:"currency"`
	PaymentID     string     `json:"payment_id,omitempty"`
	FailureReason string     `json:"failure_reason,omitempty"`
	// CancelReason is set on a CANCELLED order: "user" or "payment_timeout".
	CancelReason string    `json:"cancel_reason,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

func view(s order.Snapshot) orderJSON {
	v := orderJSON{ID: s.ID, Status: string(s.Status), Items: make([]itemJSON, len(s.Lines)), TotalCents: s.TotalCents,
		Currency: s.Currency, PaymentID: s.PaymentID, FailureReason: s.FailureReason,
		CancelReason: string(s.CancelReason), CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
	for i, l := range s.Lines {
		v.Items[i] = itemJSON{SKU: l.SKU, Name: l.Name, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents,
			LineTotalCents: l.UnitPriceCents * int64(l.Quantity)}
	}
	return v
}

// Render is the app's renderer for a created order: the same JSON GET returns.
func Render(s order.Snapshot) ([]byte, error) { return json.Marshal(view(s)) }
