package order

import (
	"context"
	"time"
)

// Replay is the stored first response to an idempotent create request. The
// request hash lets a repeat with a different body be refused instead of
// silently answered with someone else's result.
type Replay struct {
	UserID      string
	Key         string
	RequestHash string
	StatusCode  int
	Body        []byte
}

// ListQuery selects a page of one user's orders, newest first. Cursor is the
// opaque value a previous page returned; empty starts at the newest.
type ListQuery struct {
	Status Status // empty means any
	Cursor string
	Limit  int
}

// Repository stores orders. Implementations write an order's recorded events
// to the outbox in the same transaction as the order itself.
type Repository interface {
	// Create stores a new order, its events and the replay record for its
	// idempotency key atomically. It returns ErrDuplicateKey when the key
	// is already stored for this user.
	Create(ctx context.Context, o *Order, r Replay) error
	// FindReplay returns the stored replay for (userID, key) or ErrNotFound.
	FindReplay(ctx context.Context, userID, key string) (Replay, error)
	// Get returns the user's order; another user's order is ErrNotFound.
	Get(ctx context.Context, userID, id string) (*Order, error)
	// List returns a page of the user's orders and the cursor of the next
	// page ("" when this is the last).
	List(ctx context.Context, userID string, q ListQuery) ([]*Order, string, error)
	// Update loads the user's order under a row lock, applies fn and stores
	// the result with its new events, all in one transaction.
	Update(ctx context.Context, userID, id string, fn func(*Order) error) (*Order, error)
	// ApplyOnce runs fn on the order and stores its change atomically with
	// a record of (consumer, eventID) as processed. If the event was already
	// processed it returns applied=false and stores nothing; fn is then
	// usually not called, but may have been (a first delivery that committed
	// while fn ran), so fn's effects outside the order count only when
	// applied is true. fn may also run more than once, each time on a fresh
	// copy: when the order changed after it was read, the change is applied
	// again to the order as it now is. A missing order is ErrNotFound. fn may
	// change status fields only: the order it gets may have no lines loaded
	// (an implementation may skip them to save a query).
	ApplyOnce(ctx context.Context, consumer, eventID, orderID string, fn func(*Order) error) (applied bool, err error)
	// ExpirePending runs fn on at most limit PENDING orders placed before
	// cutoff, oldest first, and stores the ones fn changed, with their new
	// events, in one transaction; it returns how many fn changed. An order
	// another transaction holds (a payment result being applied, a user's
	// cancel) is skipped, not waited for: that transaction settles it, or a
	// later call takes it. fn may change status fields only: the orders it
	// gets have no lines loaded.
	ExpirePending(ctx context.Context, cutoff time.Time, limit int, fn func(*Order) error) (changed int, err error)
}
