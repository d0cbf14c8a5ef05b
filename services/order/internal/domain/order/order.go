// Package order holds the order aggregate: how an order is priced and
// validated, and which state transitions the saga may make.
package order

import (
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
)

// Status is where an order is in the payment saga.
type Status string

const (
	Pending   Status = "PENDING"
	Paid      Status = "PAID"
	Failed    Status = "FAILED"
	Cancelled Status = "CANCELLED"
)

// ParseStatus accepts the exact upper-case names used on the wire.
func ParseStatus(s string) (Status, bool) {
	switch st := Status(s); st {
	case Pending, Paid, Failed, Cancelled:
		return st, true
	}
	return "", false
}

// CancelReason says why an order is CANCELLED: its user asked, or payment
// never answered (Expire). Payment compensates both alike; the reason is
// for the user and the operator.
type CancelReason string

const (
	CancelledByUser CancelReason = "user"
	PaymentTimeout  CancelReason = "payment_timeout"
)

// Limits on a single order. They keep one request's work and row count bounded.
const (
	MaxLines    = 50
	MinQuantity = 1
	MaxQuantity = 100
)

// Line is one priced order line. UnitPriceCents is copied from the catalogue
// when the order is placed so later price changes do not rewrite history.
type Line struct {
	SKU            string
	Name           string
	Quantity       int
	UnitPriceCents int64
}

// Requested is what a client may ask for: a SKU and a quantity, nothing more.
type Requested struct {
	SKU      string
	Quantity int
}

// Order is the aggregate. Fields are unexported so every change goes through
// a method that enforces the state machine and records the matching event.
type Order struct {
	id            string
	userID        string
	status        Status
	lines         []Line
	totalCents    int64
	currency      string
	paymentID     string
	failureReason string
	cancelReason  CancelReason
	createdAt     time.Time
	updatedAt     time.Time

	events []Event
}

// New validates a request against the catalogue and prices it. All problems
// are reported together in a *ValidationError.
func New(id, userID string, req []Requested, products map[string]catalog.Product, now time.Time) (*Order, error) {
	verr := &ValidationError{}
	switch {
	case len(req) == 0:
		verr.add("items", "must contain at least one line")
	case len(req) > MaxLines:
		// Refused for its length alone: checking each line as well made the
		// work and the 422 body grow with whatever fits in the body limit
		// (1 MiB of empty lines gave a 45.9 MB problem).
		verr.add("items", "must contain at most %d lines, got %d", MaxLines, len(req))
		return nil, verr
	}
	lines := make([]Line, 0, len(req))
	seen := make(map[string]int, len(req))
	var total int64
	var currency string
	overflow := false
	for i, r := range req {
		field := fmt.Sprintf("items[%d]", i)
		if r.Quantity < MinQuantity || r.Quantity > MaxQuantity {
			verr.add(field+".quantity", "must be between %d and %d, got %d", MinQuantity, MaxQuantity, r.Quantity)
		}
		p, ok := products[r.SKU]
		switch {
		case r.SKU == "":
			verr.add(field+".sku", "is required")
			continue
		case !ok:
			verr.add(field+".sku", "unknown product %s", quoteStart(r.SKU))
			continue
		}
		if j, dup := seen[r.SKU]; dup {
			verr.add(field+".sku", "duplicates items[%d]; use one line with a larger quantity", j)
			continue
		}
		seen[r.SKU] = i
		if currency == "" {
			currency = p.Currency
		} else if p.Currency != currency {
			verr.add(field+".sku", "is priced in %s but the order is in %s", p.Currency, currency)
			continue
		}
		lines = append(lines, Line{SKU: p.SKU, Name: p.Name, Quantity: r.Quantity, UnitPriceCents: p.PriceCents})
		var fits bool
		if total, fits = addLine(total, p.PriceCents, r.Quantity); !fits {
			overflow = true
		}
	}
	if overflow {
		verr.add("items", "the order's total is more than %d minor units of its currency", int64(math.MaxInt64))
	}
	if len(verr.Fields) > 0 {
		return nil, verr
	}
	now = now.UTC()
	o := &Order{
		id: id, userID: userID, status: Pending, lines: lines,
		totalCents: total, currency: currency, createdAt: now, updatedAt: now,
	}
	o.record(Created{Order: o.Snapshot()})
	return o, nil
}

// addLine adds quantity × price to total, or reports false when either
// overflows int64. Prices come from the catalogue, bounded only by its
// column type, so a large enough one wrapped the total into a negative
// amount, which order.created then asked payment to charge. A quantity out
// of bounds is reported elsewhere; it adds nothing here. Prices are positive
// (the products table checks it).
func addLine(total, priceCents int64, quantity int) (int64, bool) {
	if quantity < MinQuantity || quantity > MaxQuantity {
		return total, true
	}
	q := int64(quantity)
	if priceCents > math.MaxInt64/q {
		return total, false
	}
	line := priceCents * q
	if total > math.MaxInt64-line {
		return total, false
	}
	return total + line, true
}

// maxEcho is the most of a client's value a field error quotes.
const maxEcho = 64

// quoteStart quotes s, or only its first maxEcho bytes (cut on a rune
// boundary) and its length. The whole value made the problem larger than
// the request: %q spells some runes in ten bytes, so one unknown SKU filling
// a 1 MiB body was answered with 2.6 MB.
func quoteStart(s string) string {
	if len(s) <= maxEcho {
		return strconv.Quote(s)
	}
	n := maxEcho
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%q... (%d bytes)", s[:n], len(s))
}

// Cancel moves a PENDING order to CANCELLED. Cancelling an order that is
// already cancelled is a no-op so a retried request succeeds without a second
// event; any other state is ErrNotPending.
func (o *Order) Cancel(now time.Time) error {
	switch o.status {
	case Cancelled:
		return nil
	case Pending:
	default:
		return fmt.Errorf("cancel order %s in state %s: %w", o.id, o.status, ErrNotPending)
	}
	o.cancel(CancelledByUser, now)
	return nil
}

// Expire cancels an order still PENDING that was placed before cutoff, and
// reports whether it did. It is the saga's compensation for a payment that
// never answers: payment sends no payment.failed when it gives up on an
// order.created (its last delivery, or a dead letter), so without it such
// an order stayed PENDING for good. It records the CancelledEvent a user's
// cancel does, so payment voids or refunds the order's charge as it does
// for that one; only the reason differs. Any other state, or an order
// placed at or after cutoff, is left alone.
func (o *Order) Expire(cutoff, now time.Time) bool {
	if o.status != Pending || !o.createdAt.Before(cutoff) {
		return false
	}
	o.cancel(PaymentTimeout, now)
	return true
}

// cancel moves a PENDING order to CANCELLED and records order.cancelled.
func (o *Order) cancel(reason CancelReason, now time.Time) {
	o.status = Cancelled
	o.cancelReason = reason
	o.updatedAt = now.UTC()
	o.record(CancelledEvent{Order: o.Snapshot()})
}

// PaymentOutcome is the result of the payment saga step for this order.
type PaymentOutcome struct {
	PaymentID string
	Succeeded bool
	Reason    string
}

// ApplyPayment moves PENDING to PAID or FAILED. It reports false and changes
// nothing in any other state: a payment result is final once applied, and a
// late result never revives a cancelled order. A payment that succeeds after
// cancellation is refunded by the payment service, which consumes
// order.cancelled too and then emits payment.refunded (services/payment,
// README "Cancelling"): the order stays CANCELLED.
func (o *Order) ApplyPayment(p PaymentOutcome, now time.Time) bool {
	if o.status != Pending {
		return false
	}
	if p.Succeeded {
		o.status = Paid
	} else {
		o.status = Failed
		o.failureReason = p.Reason
	}
	o.paymentID = p.PaymentID
	o.updatedAt = now.UTC()
	return true
}

// Contradicts reports whether p says the opposite of the order's final
// payment state: a success for a FAILED order or a failure for a PAID one,
// or a success of another payment than the one that paid a PAID order (a
// second charge). Within the saga payment never sends any of them (one
// payment row per order, and only its move out of PENDING emits a result),
// so unlike a second copy of the settling result, or a success for a
// CANCELLED order (which payment voids or refunds), it is no replay: money
// may be taken for an order this service calls failed, or taken twice for
// one it calls paid. It changes nothing; the caller decides whom to tell.
func (o *Order) Contradicts(p PaymentOutcome) bool {
	switch o.status {
	case Failed:
		return p.Succeeded
	case Paid:
		return !p.Succeeded || (o.paymentID != "" && p.PaymentID != o.paymentID)
	}
	return false
}

func (o *Order) ID() string                 { return o.id }
func (o *Order) UserID() string             { return o.userID }
func (o *Order) Status() Status             { return o.status }
func (o *Order) Lines() []Line              { return append([]Line(nil), o.lines...) }
func (o *Order) TotalCents() int64          { return o.totalCents }
func (o *Order) Currency() string           { return o.currency }
func (o *Order) PaymentID() string          { return o.paymentID }
func (o *Order) FailureReason() string      { return o.failureReason }
func (o *Order) CancelReason() CancelReason { return o.cancelReason }
func (o *Order) CreatedAt() time.Time       { return o.createdAt }
func (o *Order) UpdatedAt() time.Time       { return o.updatedAt }

// Snapshot is a plain copy of the order's state, used by events, adapters
// and views so they never hold the aggregate itself.
type Snapshot struct {
	ID            string
	UserID        string
	Status        Status
	Lines         []Line
	TotalCents    int64
	Currency      string
	PaymentID     string
	FailureReason string
	CancelReason  CancelReason // set when Status is Cancelled
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func (o *Order) Snapshot() Snapshot {
	return Snapshot{
		ID: o.id, UserID: o.userID, Status: o.status, Lines: o.Lines(),
		TotalCents: o.totalCents, Currency: o.currency, PaymentID: o.paymentID,
		FailureReason: o.failureReason, CancelReason: o.cancelReason, CreatedAt: o.createdAt, UpdatedAt: o.updatedAt,
	}
}

// FromSnapshot rebuilds an order read from storage. It records no events:
// loading is not a change.
func FromSnapshot(s Snapshot) *Order {
	return &Order{
		id: s.ID, userID: s.UserID, status: s.Status, lines: append([]Line(nil), s.Lines...),
		totalCents: s.TotalCents, currency: s.Currency, paymentID: s.PaymentID,
		failureReason: s.FailureReason, cancelReason: s.CancelReason, createdAt: s.CreatedAt, updatedAt: s.UpdatedAt,
	}
}
