// Package api is a thin client of the public HTTP API as the gateway serves
// it, shared by the end-to-end tests and the load generator. It returns the
// status and body as they came, because both callers judge those themselves.
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// Client talks to one gateway.
type Client struct {
	Base string
	HTTP *http.Client
}

// Response is one answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r Response) JSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %d body %q: %w", r.Status, trim(r.Body), err)
	}
	return nil
}

func (r Response) String() string { return fmt.Sprintf("%d %s", r.Status, trim(r.Body)) }

func trim(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "..."
	}
	return string(b)
}

// Do sends one request; body is JSON-encoded unless nil; header adds headers.
func (c *Client) Do(ctx context.Context, method, path, token string, body any, header http.Header) (Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return Response{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return Response{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Register creates a user.
func (c *Client) Register(ctx context.Context, email, password, name string) (Response, error) {
	return c.Do(ctx, http.MethodPost, "/api/v1/users", "", map[string]string{"email": email, "password": password, "name": name}, nil)
}

// Session is a successful log in.
type Session struct {
	UserID      string `json:"user_id"`
	AccessToken string `json:"access_token"`
}

// Login opens a session.
func (c *Client) Login(ctx context.Context, email, password string) (Response, error) {
	return c.Do(ctx, http.MethodPost, "/api/v1/sessions", "", map[string]string{"email": email, "password": password}, nil)
}

// Product is one catalogue entry.
type Product struct {
	SKU        string `json:"sku"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
}

// Products lists the catalogue.
func (c *Client) Products(ctx context.Context, token string) (Response, error) {
	return c.Do(ctx, http.MethodGet, "/api/v1/products", token, nil, nil)
}

// Item is one order line.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// Order is an order as the API shows it.
type Order struct {
	ID            string `json:"id"`
	Status        string `json:"status"`
	TotalCents    int64  `json:"total_cents"`
	PaymentID     string `json:"payment_id"`
	FailureReason string `json:"failure_reason"`
}

// CreateOrder places an order under an idempotency key; extra headers (a
// traceparent, say) are sent as given.
func (c *Client) CreateOrder(ctx context.Context, token, key string, items []Item, extra http.Header) (Response, error) {
	h := http.Header{}
	for k, vs := range extra {
		h[k] = vs
	}
	h.Set("Idempotency-Key", key)
	return c.Do(ctx, http.MethodPost, "/api/v1/orders", token, map[string]any{"items": items}, h)
}

// GetOrder reads one order.
func (c *Client) GetOrder(ctx context.Context, token, id string) (Response, error) {
	return c.Do(ctx, http.MethodGet, "/api/v1/orders/"+url.PathEscape(id), token, nil, nil)
}

// Payment is a payment as the API shows it.
type Payment struct {
	ID          string `json:"id"`
	OrderID     string `json:"order_id"`
	Status      string `json:"status"`
	AmountCents int64  `json:"amount_cents"`
	Reason      string `json:"reason"`
}

// PaymentsOf lists the caller's payments of one order.
func (c *Client) PaymentsOf(ctx context.Context, token, orderID string) (Response, error) {
	return c.Do(ctx, http.MethodGet, "/api/v1/payments?order_id="+url.QueryEscape(orderID), token, nil, nil)
}
