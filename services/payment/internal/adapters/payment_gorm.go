// Package adapters implements the payment service's domain interfaces on
// gorm (PostgreSQL or SQLite), NATS JetStream and a simulated provider.
package adapters

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/services/payment/internal/domain/payment"
)

type paymentRow struct {
	ID          string `gorm:"primaryKey"`
	OrderID     string
	UserID      string
	AmountCents int64
	Currency    string
	Status      string
	Reason      string
	// CancelRequested: order.cancelled arrived while the charge was PENDING.
	CancelRequested bool
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

func (paymentRow) TableName() string { return "payments" }

type deadLetterRow struct {
	ID            string `gorm:"primaryKey"`
	Consumer      string
	Subject       string
	MsgID         string
	EventID       string
	EventType     string
	Reason        string
	OrderID       string  // of an order.created; empty for any other message
	MessageKey    *string // NULL when the message has none (never a conflict)
	PayloadBase64 string  `gorm:"column:payload_base64"`
	Headers       string
	CreatedAt     time.Time
}

func (deadLetterRow) TableName() string { return "dead_letters" }

// PaymentGorm is the payment.Repository on gorm.
type PaymentGorm struct {
	db     *gorm.DB
	notify func()
}

func NewPaymentGorm(db *gorm.DB) *PaymentGorm { return &PaymentGorm{db: db, notify: func() {}} }

// NotifyOnEvents sets a function called after a transaction that wrote
// outbox rows commits (outbox.Relay.Nudge).
func (r *PaymentGorm) NotifyOnEvents(fn func()) *PaymentGorm {
	r.notify = fn
	return r
}

var _ payment.Repository = (*PaymentGorm)(nil)

func (r *PaymentGorm) Claim(ctx context.Context, p *payment.Payment) (*payment.Payment, error) {
	row := toRow(p.Snapshot())
	envs, err := envelopes(p)
	if err != nil {
		return nil, fmt.Errorf("claim payment for order %s: %w", row.OrderID, err)
	}
	inserted, err := r.insert(ctx, row, envs)
	if err != nil {
		return nil, fmt.Errorf("claim payment for order %s: %w", row.OrderID, err)
	}
	if inserted {
		if len(envs) > 0 {
			r.notify()
		}
		// Our row went in, so the stored payment is p: the common case
		// (first delivery) needs no read back.
		return p, nil
	}
	var stored paymentRow
	if err := r.db.WithContext(ctx).Where("order_id = ?", row.OrderID).Take(&stored).Error; err != nil {
		return nil, fmt.Errorf("read payment for order %s: %w", row.OrderID, err)
	}
	return fromRow(stored), nil
}

// claimSQL inserts a payment unless its order has one: the loser of a race
// (or a redelivery) inserts nothing and reads the winner's row. Plain SQL
// rather than Create with an OnConflict clause: gorm builds that statement
// by reflection on every call, on the path of every order.
const claimSQL = `INSERT INTO payments (id, order_id, user_id, amount_cents, currency, status, reason, cancel_requested, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (order_id) DO NOTHING`

// insert runs claimSQL and, only when the row went in, adds envs (a claim
// made already final: declined by the rules) to the outbox, atomically: one
// statement on PostgreSQL, a transaction on SQLite, as in transition.
func (r *PaymentGorm) insert(ctx context.Context, row paymentRow, envs []event.Envelope) (bool, error) {
	db := r.db.WithContext(ctx)
	args := []any{row.ID, row.OrderID, row.UserID, row.AmountCents, row.Currency, row.Status, row.Reason, row.CancelRequested, row.CreatedAt, row.UpdatedAt}
	switch {
	case len(envs) == 0:
		res := db.Exec(claimSQL, args...)
		return res.RowsAffected == 1, res.Error
	case database.Dialect(r.db) == database.Postgres:
		ins, insArgs, err := outbox.Insert(ctx, "EXISTS (SELECT 1 FROM c)", Topic, row.OrderID, envs...)
		if err != nil {
			return false, err
		}
		var ids []string
		err = db.Raw("WITH c AS ("+claimSQL+" RETURNING id), e AS ("+ins+") SELECT id FROM c", append(args, insArgs...)...).Scan(&ids).Error
		return len(ids) == 1, err
	default:
		var inserted bool
		err := db.Transaction(func(tx *gorm.DB) error {
			res := tx.Exec(claimSQL, args...)
			if res.Error != nil || res.RowsAffected == 0 {
				return res.Error
			}
			inserted = true
			for _, env := range envs {
				if err := outbox.Add(ctx, tx, Topic, row.OrderID, env); err != nil {
					return fmt.Errorf("outbox %s: %w", env.Type, err)
				}
			}
			return nil
		})
		return inserted, err
	}
}

func (r *PaymentGorm) Complete(ctx context.Context, p *payment.Payment) (stored, cancelRequested bool, err error) {
	return r.transition(ctx, p, payment.Pending)
}

func (r *PaymentGorm) SaveRefund(ctx context.Context, p *payment.Payment) (bool, error) {
	stored, _, err := r.transition(ctx, p, payment.Succeeded)
	return stored, err
}

func (r *PaymentGorm) SaveRefundDeclined(ctx context.Context, p *payment.Payment) (bool, error) {
	s := p.Snapshot()
	res := r.db.WithContext(ctx).Model(&paymentRow{}).
		Where("id = ? AND status = ? AND reason <> ?", s.ID, string(payment.Succeeded), payment.ReasonRefundDeclined).
		Updates(map[string]any{"reason": s.Reason, "updated_at": s.UpdatedAt})
	if res.Error != nil {
		return false, fmt.Errorf("store the declined refund of payment %s: %w", s.ID, res.Error)
	}
	return res.RowsAffected == 1, nil
}

func (r *PaymentGorm) RequestCancel(ctx context.Context, p *payment.Payment) (bool, error) {
	res := r.db.WithContext(ctx).Model(&paymentRow{}).Where("id = ? AND status = ?", p.ID(), string(payment.Pending)).
		Updates(map[string]any{"cancel_requested": true, "updated_at": time.Now().UTC()})
	if res.Error != nil {
		return false, fmt.Errorf("request cancel of payment %s: %w", p.ID(), res.Error)
	}
	return res.RowsAffected == 1, nil
}

// transition stores p's new state and its events in one transaction, only
// if the stored row is still in state from: the first writer wins and a
// concurrent worker's update matches no row and emits nothing.
//
// The update returns the row's cancel_requested flag as it stands after the
// write. On PostgreSQL a concurrent RequestCancel either committed before
// (our UPDATE waited on its row lock, re-read the row and carries the flag
// forward) or runs after and finds the row no longer PENDING; SQLite
// serialises writers. So a flag is never set on a row after its charge was
// stored without the cancel seeing the new state.
func (r *PaymentGorm) transition(ctx context.Context, p *payment.Payment, from payment.Status) (stored, cancelRequested bool, err error) {
	s := p.Snapshot()
	envs, err := envelopes(p)
	if err != nil {
		return false, false, fmt.Errorf("store payment %s as %s: %w", s.ID, s.Status, err)
	}
	if database.Dialect(r.db) == database.Postgres {
		stored, cancelRequested, err = r.transitionOneStatement(ctx, s, from, envs)
	} else {
		stored, cancelRequested, err = r.transitionTx(ctx, s, from, envs)
	}
	if err != nil {
		return false, false, fmt.Errorf("store payment %s as %s: %w", s.ID, s.Status, err)
	}
	if stored {
		r.notify()
	}
	return stored, cancelRequested, nil
}

// envelopes are p's recorded events as outbox envelopes.
func envelopes(p *payment.Payment) ([]event.Envelope, error) {
	events := p.Events()
	envs := make([]event.Envelope, 0, len(events))
	for _, e := range events {
		env, err := Envelope(e)
		if err != nil {
			return nil, err
		}
		envs = append(envs, env)
	}
	return envs, nil
}

// transitionOneStatement is transition on PostgreSQL: the conditional update
// and the outbox rows are one statement (outbox.Insert), one round trip
// where a transaction took four; a single statement commits or fails as a
// whole, so the events still appear exactly when the state change does.
func (r *PaymentGorm) transitionOneStatement(ctx context.Context, s payment.Snapshot, from payment.Status, envs []event.Envelope) (stored, cancelRequested bool, err error) {
	q := "UPDATE payments SET status = ?, reason = ?, updated_at = ? WHERE id = ? AND status = ? RETURNING cancel_requested"
	args := []any{string(s.Status), s.Reason, s.UpdatedAt, s.ID, string(from)}
	if len(envs) > 0 {
		ins, insArgs, err := outbox.Insert(ctx, "EXISTS (SELECT 1 FROM u)", Topic, s.OrderID, envs...)
		if err != nil {
			return false, false, err
		}
		q = "WITH u AS (" + q + "), e AS (" + ins + ") SELECT cancel_requested FROM u"
		args = append(args, insArgs...)
	}
	var after []bool
	if err := r.db.WithContext(ctx).Raw(q, args...).Scan(&after).Error; err != nil {
		return false, false, fmt.Errorf("update payment: %w", err)
	}
	return len(after) == 1, len(after) == 1 && after[0], nil
}

// transitionTx is transition on SQLite, which has no UPDATE or INSERT inside
// WITH: the update and Add in one transaction.
func (r *PaymentGorm) transitionTx(ctx context.Context, s payment.Snapshot, from payment.Status, envs []event.Envelope) (stored, cancelRequested bool, err error) {
	err = r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var after []paymentRow
		res := tx.Model(&after).Clauses(clause.Returning{Columns: []clause.Column{{Name: "cancel_requested"}}}).
			Where("id = ? AND status = ?", s.ID, string(from)).
			Updates(map[string]any{"status": string(s.Status), "reason": s.Reason, "updated_at": s.UpdatedAt})
		if res.Error != nil {
			return fmt.Errorf("update payment: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return nil
		}
		stored = true
		cancelRequested = len(after) == 1 && after[0].CancelRequested
		for _, env := range envs {
			if err := outbox.Add(ctx, tx, Topic, s.OrderID, env); err != nil {
				return fmt.Errorf("outbox %s: %w", env.Type, err)
			}
		}
		return nil
	})
	return stored, cancelRequested, err
}

func (r *PaymentGorm) Get(ctx context.Context, userID, id string) (*payment.Payment, error) {
	var row paymentRow
	err := r.db.WithContext(ctx).Where("id = ? AND user_id = ?", id, userID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, payment.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get payment: %w", err)
	}
	return fromRow(row), nil
}

func (r *PaymentGorm) List(ctx context.Context, userID string, q payment.ListQuery) ([]*payment.Payment, string, error) {
	sel := r.db.WithContext(ctx).Where("user_id = ?", userID)
	if q.OrderID != "" {
		sel = sel.Where("order_id = ?", q.OrderID)
	}
	if q.Cursor != "" {
		// Ids are UUIDv7, so their text order is their creation order and the
		// cursor is the last id seen: keyset pagination, stable while new
		// payments arrive, a range scan of payments_user_id (user_id, id).
		sel = sel.Where("id < ?", q.Cursor)
	}
	var rows []paymentRow
	if err := sel.Order("id DESC").Limit(q.Limit + 1).Find(&rows).Error; err != nil {
		return nil, "", fmt.Errorf("list payments: %w", err)
	}
	next := ""
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
		next = rows[len(rows)-1].ID
	}
	out := make([]*payment.Payment, len(rows))
	for i, row := range rows {
		out[i] = fromRow(row)
	}
	return out, next, nil
}

func (r *PaymentGorm) SaveDeadLetter(ctx context.Context, d payment.DeadLetter) error {
	h, err := json.Marshal(d.Headers)
	if err != nil {
		return fmt.Errorf("encode dead letter headers: %w", err)
	}
	// The text columns hold what a hostile message carried (its id, type,
	// a reason quoting it); PostgreSQL text refuses NUL and invalid UTF-8,
	// and a dead letter that cannot be stored is redelivered forever. The
	// exact bytes stay in the payload and the JSON-escaped headers.
	row := deadLetterRow{ID: d.ID, Consumer: d.Consumer, Subject: text(d.Subject), MsgID: text(d.MsgID), EventID: text(d.EventID),
		EventType: text(d.EventType), Reason: text(d.Reason), OrderID: text(d.OrderID), PayloadBase64: base64.StdEncoding.EncodeToString(d.Payload),
		Headers: string(h), CreatedAt: d.CreatedAt}
	if d.MessageKey != "" {
		key := text(d.MessageKey)
		row.MessageKey = &key
	}
	// A redelivery of a message already recorded (its termination was
	// lost) finds its row and writes nothing: one row per message.
	db := r.db.WithContext(ctx).Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "message_key"}}, DoNothing: true})
	res := db.Create(&row)
	if res.Error != nil {
		return fmt.Errorf("store dead letter: %w", res.Error)
	}
	if res.RowsAffected == 0 {
		return payment.ErrDeadLetterRecorded
	}
	return nil
}

func (r *PaymentGorm) ChargeDeadLettered(ctx context.Context, orderID string) (bool, error) {
	var ids []string
	// Only the order.created's: a dead order.cancelled names its order too
	// (for Unsettled), but the order's charge may still be delivered, and a
	// cancel that took it for a dead charge would void a charge in flight.
	if err := r.db.WithContext(ctx).Model(&deadLetterRow{}).Where("order_id = ? AND event_type = ?", orderID, OrderCreated).
		Limit(1).Pluck("id", &ids).Error; err != nil {
		return false, fmt.Errorf("look up dead letters of order %s: %w", orderID, err)
	}
	return len(ids) > 0, nil
}

// unsettledSQL selects the rows payment.Repository.Unsettled describes,
// starting from the dead letters that name an order (few; a dead letter is
// rare) and reaching each one's payment through its unique order id, rather
// than from the payments, nearly all of them SUCCEEDED. DISTINCT: an order
// may have a dead order.created and a dead order.cancelled. The third case,
// a PENDING row the cancel never flagged, needs both: with its order.created
// alive a delivery may still charge it, and the round must not void under it.
const unsettledSQL = `SELECT DISTINCT p.* FROM dead_letters d JOIN payments p ON p.order_id = d.order_id
WHERE d.order_id <> '' AND p.status IN (@pending, @succeeded) AND p.reason <> @declined
  AND ((p.cancel_requested AND d.event_type = @created)
    OR (p.status = @succeeded AND d.event_type = @cancelled)
    OR (p.status = @pending AND d.event_type = @cancelled AND EXISTS (
      SELECT 1 FROM dead_letters c WHERE c.order_id = d.order_id AND c.event_type = @created)))
ORDER BY p.id LIMIT @limit`

func (r *PaymentGorm) Unsettled(ctx context.Context, limit int) ([]*payment.Payment, error) {
	var rows []paymentRow
	err := r.db.WithContext(ctx).Raw(unsettledSQL, map[string]any{"pending": string(payment.Pending), "succeeded": string(payment.Succeeded),
		"declined": payment.ReasonRefundDeclined, "created": OrderCreated, "cancelled": OrderCancelled, "limit": limit}).Scan(&rows).Error
	if err != nil {
		return nil, fmt.Errorf("list unsettled payments of cancelled orders: %w", err)
	}
	out := make([]*payment.Payment, len(rows))
	for i, row := range rows {
		out[i] = fromRow(row)
	}
	return out, nil
}

// deleteSettledSQL deletes a batch of the dead letters
// payment.Repository.DeleteSettledDeadLetters describes. The batch is
// chosen in a subquery because neither dialect takes DELETE ... LIMIT
// (PostgreSQL has none, SQLite only when built with it); a bounded batch
// keeps each statement's locks and WAL short beside the charges.
const deleteSettledSQL = `DELETE FROM dead_letters WHERE id IN (
  SELECT d.id FROM dead_letters d JOIN payments p ON p.order_id = d.order_id
  WHERE d.order_id <> '' AND d.created_at < @before AND p.status IN (@failed, @refunded, @cancelled)
  LIMIT @limit)`

func (r *PaymentGorm) DeleteSettledDeadLetters(ctx context.Context, before time.Time, limit int) (int, error) {
	res := r.db.WithContext(ctx).Exec(deleteSettledSQL, map[string]any{"before": before.UTC(), "failed": string(payment.Failed),
		"refunded": string(payment.Refunded), "cancelled": string(payment.Cancelled), "limit": limit})
	if res.Error != nil {
		return 0, fmt.Errorf("delete settled dead letters: %w", res.Error)
	}
	return int(res.RowsAffected), nil
}

func (r *PaymentGorm) ByOrder(ctx context.Context, orderID string) (*payment.Payment, error) {
	var row paymentRow
	err := r.db.WithContext(ctx).Where("order_id = ?", orderID).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return nil, payment.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read payment for order %s: %w", orderID, err)
	}
	return fromRow(row), nil
}

// text makes s storable in a text column: invalid UTF-8 and NUL become U+FFFD.
func text(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// DeadLetters lists recorded dead letters, newest first (operators, tests).
func (r *PaymentGorm) DeadLetters(ctx context.Context, limit int) ([]payment.DeadLetter, error) {
	var rows []deadLetterRow
	if err := r.db.WithContext(ctx).Order("created_at DESC, id DESC").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out := make([]payment.DeadLetter, len(rows))
	for i, row := range rows {
		payload, _ := base64.StdEncoding.DecodeString(row.PayloadBase64)
		var h map[string]string
		_ = json.Unmarshal([]byte(row.Headers), &h)
		out[i] = payment.DeadLetter{ID: row.ID, Consumer: row.Consumer, Subject: row.Subject, MsgID: row.MsgID, EventID: row.EventID,
			EventType: row.EventType, Reason: row.Reason, OrderID: row.OrderID, Payload: payload, Headers: h, CreatedAt: row.CreatedAt.UTC()}
		if row.MessageKey != nil {
			out[i].MessageKey = *row.MessageKey
		}
	}
	return out, nil
}

func toRow(s payment.Snapshot) paymentRow {
	return paymentRow{ID: s.ID, OrderID: s.OrderID, UserID: s.UserID, AmountCents: s.AmountCents, Currency: s.Currency,
		Status: string(s.Status), Reason: s.Reason, CancelRequested: s.CancelRequested, CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

func fromRow(r paymentRow) *payment.Payment {
	return payment.FromSnapshot(payment.Snapshot{ID: r.ID, OrderID: r.OrderID, UserID: r.UserID, AmountCents: r.AmountCents,
		Currency: r.Currency, Status: payment.Status(r.Status), Reason: r.Reason, CancelRequested: r.CancelRequested, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC()})
}
