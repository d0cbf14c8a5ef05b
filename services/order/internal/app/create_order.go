package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// CreateOrder places an order. Only SKUs and quantities come from the client;
// prices come from the catalogue.
type CreateOrder struct {
	UserID         string
	IdempotencyKey string
	Items          []order.Requested
}

// CreateOrderResult is the response to send: either the new order's or the
// replay of the first response to the same key.
type CreateOrderResult struct {
	StatusCode int
	Body       []byte
	Replayed   bool
}

type CreateOrderHandler struct{ d Deps }

// Handle stores the order, its order.created event and the replay record in
// one transaction. A repeat of the same key and request replays the stored
// response; the same key with another request is order.ErrKeyReused.
//
// The common case is a new key, so the key is not looked up first: the
// insert itself detects a stored key (ErrDuplicateKey, which also covers a
// concurrent request with the same key once it commits) and only then is the
// stored response read. That saves a round trip on every new order.
func (h CreateOrderHandler) Handle(ctx context.Context, cmd CreateOrder) (CreateOrderResult, error) {
	hash := requestHash(cmd.Items)
	products, err := h.d.Catalog.All(ctx)
	if err != nil {
		return CreateOrderResult{}, fmt.Errorf("create order: load catalogue: %w", err)
	}
	o, err := order.New(h.d.NewID(), cmd.UserID, cmd.Items, catalog.Index(products), h.d.Now())
	if err != nil {
		// An invalid request may still reuse a key: say so, it is the
		// more useful answer.
		if res, ok, rerr := h.replay(ctx, cmd, hash); rerr != nil || ok {
			return res, rerr
		}
		return CreateOrderResult{}, err
	}
	body, err := h.d.Render(o.Snapshot())
	if err != nil {
		return CreateOrderResult{}, fmt.Errorf("create order: render: %w", err)
	}
	r := order.Replay{UserID: cmd.UserID, Key: cmd.IdempotencyKey, RequestHash: hash, StatusCode: http.StatusCreated, Body: body}
	// Two attempts: a key found held and then not found was forgotten in
	// between (housekeeping, past its retention), and past retention a
	// retry is a new order, so the second attempt stores it. A key held
	// again then is another request's, which the replay answers.
	for attempt := 1; ; attempt++ {
		err = h.d.Orders.Create(ctx, o, r)
		if !errors.Is(err, order.ErrDuplicateKey) {
			break
		}
		res, ok, rerr := h.replay(ctx, cmd, hash)
		if rerr != nil || ok {
			return res, rerr
		}
		if attempt == 2 {
			return CreateOrderResult{}, fmt.Errorf("create order: idempotency key %q vanished after a conflict twice", cmd.IdempotencyKey)
		}
	}
	if err != nil {
		return CreateOrderResult{}, fmt.Errorf("create order: %w", err)
	}
	return CreateOrderResult{StatusCode: r.StatusCode, Body: body}, nil
}

func (h CreateOrderHandler) replay(ctx context.Context, cmd CreateOrder, hash string) (CreateOrderResult, bool, error) {
	r, err := h.d.Orders.FindReplay(ctx, cmd.UserID, cmd.IdempotencyKey)
	switch {
	case errors.Is(err, order.ErrNotFound):
		return CreateOrderResult{}, false, nil
	case err != nil:
		return CreateOrderResult{}, false, fmt.Errorf("create order: find replay: %w", err)
	case r.RequestHash != hash:
		return CreateOrderResult{}, false, order.ErrKeyReused
	}
	return CreateOrderResult{StatusCode: r.StatusCode, Body: r.Body, Replayed: true}, true, nil
}

// requestHash fingerprints the meaning of a request rather than its bytes, so
// a client that re-serialises the same items (other whitespace, key order,
// an ignored price field) still gets its replay.
func requestHash(items []order.Requested) string {
	h := sha256.New()
	h.Write([]byte("create-order/v1\n"))
	for _, it := range items {
		h.Write([]byte(strconv.Quote(it.SKU)))
		h.Write([]byte{' '})
		h.Write([]byte(strconv.Itoa(it.Quantity)))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
