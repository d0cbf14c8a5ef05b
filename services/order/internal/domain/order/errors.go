package order

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrNotFound covers both a missing order and another user's order:
	// callers must not be able to tell the two apart.
	ErrNotFound = errors.New("order not found")
	// ErrNotPending is returned when a transition needs a PENDING order.
	ErrNotPending = errors.New("order is not pending")
	// ErrKeyReused means an Idempotency-Key was sent again with a different request.
	ErrKeyReused = errors.New("idempotency key reused with a different request")
	// ErrDuplicateKey is what a repository returns when another request
	// stored the same idempotency key first; the caller then replays it.
	ErrDuplicateKey = errors.New("idempotency key already stored")
	// ErrResultMismatch means a payment result names another user or another
	// amount than the order it is for: corrupt input, never applied.
	ErrResultMismatch = errors.New("payment result does not match the order")
)

// FieldError names the request field a rule rejected, e.g. "items[2].quantity".
type FieldError struct {
	Field  string
	Detail string
}

// ValidationError lists every rule an order request broke, so a client can
// fix them all in one round trip.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid order: " + strings.Join(parts, "; ")
}

func (e *ValidationError) add(field, format string, args ...any) {
	e.Fields = append(e.Fields, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}
