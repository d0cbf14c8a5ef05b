// Package adapters implements the order service's domain interfaces on gorm
// (PostgreSQL or SQLite), Redis and NATS JetStream.
package adapters

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/shanhai-dev/shanhai/pkg/database"
	"github.com/shanhai-dev/shanhai/pkg/dedup"
	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/outbox"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

type orderRow struct {
	ID            string `gorm:"primaryKey"`
	UserID        string
	Status        string
	TotalCents    int64
	Currency      string
	PaymentID     string
	FailureReason string
	CancelReason  string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

func (orderRow) TableName() string { return "orders" }

type orderItemRow struct {
	OrderID        string `gorm:"primaryKey"`
	Line           int    `gorm:"primaryKey"`
	SKU            string `gorm:"column:sku"`
	Name           string
	Quantity       int
	UnitPriceCents int64
}

func (orderItemRow) TableName() string { return "order_items" }

type replayRow struct {
	UserID      string `gorm:"primaryKey"`
	IdemKey     string `gorm:"primaryKey"`
	RequestHash string
	StatusCode  int
	Body        string
	OrderID     string
	CreatedAt   time.Time
}

func (replayRow) TableName() string { return "idempotency_keys" }

// OrderGorm is the order.Repository on gorm. Every write that changes an
// order also writes the order's recorded events to the outbox in the same
// transaction, so Kafka sees an event exactly when its change committed.
type OrderGorm struct {
	db     *gorm.DB
	notify func()
}

func NewOrderGorm(db *gorm.DB) *OrderGorm { return &OrderGorm{db: db, notify: func() {}} }

// NotifyOnEvents sets a function called after a transaction that wrote
// outbox rows commits (outbox.Relay.Nudge), so events leave at once instead
// of at the relay's next poll.
func (r *OrderGorm) NotifyOnEvents(fn func()) *OrderGorm {
	r.notify = fn
	return r
}

var _ order.Repository = (*OrderGorm)(nil)

func (r *OrderGorm) Create(ctx context.Context, o *order.Order, rp order.Replay) error {
	s := o.Snapshot()
	var err error
	if database.Dialect(r.db) == database.Postgres {
		err = r.createOneStatement(ctx, s, rp, o.Events())
	} else {
		err = r.createTx(ctx, s, rp, o.Events())
	}
	if err != nil && !errors.Is(err, order.ErrDuplicateKey) {
		return fmt.Errorf("store order %s: %w", s.ID, err)
	}
	if err == nil {
		r.notify()
	}
	return err
}

// createOneStatement is Create on PostgreSQL: the key, the order, its lines
// and its events go in with one statement of data-modifying WITH clauses,
// each inserting only if the key did (a held key inserts nothing else). It
// is atomic as one statement is, and takes one round trip where the
// transaction of createTx takes six (BEGIN, four INSERTs, COMMIT): the
// largest part of an order's database work.
func (r *OrderGorm) createOneStatement(ctx context.Context, s order.Snapshot, rp order.Replay, events []order.Event) error {
	var q strings.Builder
	q.WriteString(`WITH k AS (
  INSERT INTO idempotency_keys (user_id, idem_key, request_hash, status_code, body, order_id, created_at)
  VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING order_id),
o AS (
  INSERT INTO orders (id, user_id, status, total_cents, currency, payment_id, failure_reason, created_at, updated_at)
  SELECT order_id, CAST(? AS text), CAST(? AS text), CAST(? AS bigint), CAST(? AS text), CAST(? AS text), CAST(? AS text),
         CAST(? AS timestamp), CAST(? AS timestamp) FROM k)`)
	args := []any{rp.UserID, rp.Key, rp.RequestHash, rp.StatusCode, string(rp.Body), s.ID, s.CreatedAt,
		s.UserID, string(s.Status), s.TotalCents, s.Currency, s.PaymentID, s.FailureReason, s.CreatedAt, s.UpdatedAt}
	if len(s.Lines) > 0 {
		// Types are spelled out: inside a sub-select PostgreSQL would read an untyped parameter as text.
		q.WriteString(`,
i AS (
  INSERT INTO order_items (order_id, line, sku, name, quantity, unit_price_cents)
  SELECT k.order_id, v.* FROM k, (VALUES `)
		for i, l := range s.Lines {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(CAST(? AS integer), CAST(? AS text), CAST(? AS text), CAST(? AS integer), CAST(? AS bigint))")
			args = append(args, i, l.SKU, l.Name, l.Quantity, l.UnitPriceCents)
		}
		q.WriteString(") AS v)")
	}
	if len(events) > 0 {
		envs, err := envelopes(events)
		if err != nil {
			return err
		}
		ins, insArgs, err := outbox.Insert(ctx, "EXISTS (SELECT 1 FROM k)", Topic, s.ID, envs...)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		q.WriteString(",\ne AS (" + ins + ")")
		args = append(args, insArgs...)
	}
	q.WriteString("\nSELECT count(*) FROM k")
	var inserted int
	if err := r.db.WithContext(ctx).Raw(q.String(), args...).Scan(&inserted).Error; err != nil {
		return fmt.Errorf("insert order: %w", err)
	}
	if inserted == 0 {
		return order.ErrDuplicateKey
	}
	return nil
}

// createTx is Create on SQLite (no INSERT inside WITH): one transaction.
func (r *OrderGorm) createTx(ctx context.Context, s order.Snapshot, rp order.Replay, events []order.Event) error {
	return r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// The key goes in first: if another request already holds it, we
		// stop before writing anything else. ON CONFLICT DO NOTHING works on
		// both PostgreSQL and SQLite without parsing driver error codes.
		res := tx.Clauses(clause.OnConflict{DoNothing: true}).Create(&replayRow{
			UserID: rp.UserID, IdemKey: rp.Key, RequestHash: rp.RequestHash, StatusCode: rp.StatusCode,
			Body: string(rp.Body), OrderID: s.ID, CreatedAt: s.CreatedAt,
		})
		if res.Error != nil {
			return fmt.Errorf("insert idempotency key: %w", res.Error)
		}
		if res.RowsAffected == 0 {
			return order.ErrDuplicateKey
		}
		row := toRow(s)
		if err := tx.Create(&row).Error; err != nil {
			return fmt.Errorf("insert order: %w", err)
		}
		if items := toItems(s); len(items) > 0 {
			if err := tx.Create(&items).Error; err != nil {
				return fmt.Errorf("insert order items: %w", err)
			}
		}
		return addEvents(ctx, tx, events)
	})
}

func (r *OrderGorm) FindReplay(ctx context.Context, userID, key string) (order.Replay, error) {
	var row replayRow
	err := r.db.WithContext(ctx).Where("user_id = ? AND idem_key = ?", userID, key).Take(&row).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return order.Replay{}, order.ErrNotFound
	}
	if err != nil {
		return order.Replay{}, fmt.Errorf("find idempotency key: %w", err)
	}
	return order.Replay{UserID: row.UserID, Key: row.IdemKey, RequestHash: row.RequestHash, StatusCode: row.StatusCode, Body: []byte(row.Body)}, nil
}

// Get reads the order and its lines in one query: a client polling for its
// order's status is the most frequent read, and a second round trip for the
// lines cost as much as the first. The rows are scanned by hand: gorm's
// reflective Scan into a row struct was most of this path's CPU.
func (r *OrderGorm) Get(ctx context.Context, userID, id string) (*order.Order, error) {
	rows, err := r.db.WithContext(ctx).Raw(`SELECT o.id, o.user_id, o.status, o.total_cents, o.currency, o.payment_id, o.failure_reason,
       o.cancel_reason, o.created_at, o.updated_at, i.line, i.sku, i.name, i.quantity, i.unit_price_cents
FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
WHERE o.id = ? AND o.user_id = ?
ORDER BY i.line`, id, userID).Rows()
	if err != nil {
		return nil, fmt.Errorf("get order: %w", err)
	}
	defer rows.Close()
	var (
		o     orderRow
		found bool
		lines []order.Line
	)
	for rows.Next() {
		// The line columns are NULL when the LEFT JOIN finds none.
		var (
			line, qty sql.NullInt64
			sku, name sql.NullString
			unitPrice sql.NullInt64
		)
		if err := rows.Scan(&o.ID, &o.UserID, &o.Status, &o.TotalCents, &o.Currency, &o.PaymentID, &o.FailureReason,
			&o.CancelReason, &o.CreatedAt, &o.UpdatedAt, &line, &sku, &name, &qty, &unitPrice); err != nil {
			return nil, fmt.Errorf("get order: %w", err)
		}
		found = true
		if line.Valid {
			lines = append(lines, order.Line{SKU: sku.String, Name: name.String, Quantity: int(qty.Int64), UnitPriceCents: unitPrice.Int64})
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("get order: %w", err)
	}
	if !found {
		return nil, order.ErrNotFound
	}
	return fromRow(o, lines), nil
}

func (r *OrderGorm) List(ctx context.Context, userID string, q order.ListQuery) ([]*order.Order, string, error) {
	db := r.db.WithContext(ctx)
	sel := db.Where("user_id = ?", userID)
	if q.Status != "" {
		sel = sel.Where("status = ?", string(q.Status))
	}
	if q.Cursor != "" {
		// Ids are UUIDv7: their text order is their creation order, so the
		// cursor is just the last id seen (keyset pagination: stable while
		// new orders arrive, and an index range scan).
		sel = sel.Where("id < ?", q.Cursor)
	}
	var rows []orderRow
	if err := sel.Order("id DESC").Limit(q.Limit + 1).Find(&rows).Error; err != nil {
		return nil, "", fmt.Errorf("list orders: %w", err)
	}
	next := ""
	if len(rows) > q.Limit {
		rows = rows[:q.Limit]
		next = rows[len(rows)-1].ID
	}
	os, err := withItems(db, rows)
	return os, next, err
}

func (r *OrderGorm) Update(ctx context.Context, userID, id string, fn func(*order.Order) error) (*order.Order, error) {
	var out *order.Order
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		o, err := lockOrder(tx, true, "id = ? AND user_id = ?", id, userID)
		if err != nil {
			return err
		}
		before := o.Snapshot()
		if err := fn(o); err != nil {
			return err
		}
		out = o
		return saveOrder(ctx, tx, before, o)
	})
	if err != nil {
		return nil, fmt.Errorf("update order %s: %w", id, err)
	}
	if len(out.Events()) > 0 {
		r.notify()
	}
	return out, nil
}

// ApplyOnce applies fn to the order once per event. On PostgreSQL it first
// tries applyRead; only when the order changed between that read and its
// write does it take the locking transaction, which SQLite always takes.
func (r *OrderGorm) ApplyOnce(ctx context.Context, consumer, eventID, orderID string, fn func(*order.Order) error) (bool, error) {
	if database.Dialect(r.db) == database.Postgres {
		applied, done, err := r.applyRead(ctx, consumer, eventID, orderID, fn)
		if err != nil {
			return false, fmt.Errorf("apply event %s to order %s: %w", eventID, orderID, err)
		}
		if done {
			return applied, nil
		}
	}
	applied := false
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		// Lock the order before marking the event: concurrent deliveries of
		// results for one order then apply one after the other.
		// A payment result touches only the status columns: skip the lines.
		o, err := lockOrder(tx, false, "id = ?", orderID)
		if err != nil {
			return err
		}
		first, err := dedup.Once(ctx, tx, consumer, eventID)
		if err != nil || !first {
			return err
		}
		before := o.Snapshot()
		if err := fn(o); err != nil {
			return err
		}
		applied = true
		return saveOrder(ctx, tx, before, o)
	})
	if err != nil {
		return false, fmt.Errorf("apply event %s to order %s: %w", eventID, orderID, err)
	}
	return applied, nil
}

// applyRead is ApplyOnce on PostgreSQL in two round trips without a
// transaction, where the locking one took four (BEGIN, lock and record, UPDATE,
// COMMIT) on every payment result, the service's busiest write: an unlocked
// read of the order and of the event's record, fn on what it read, then one
// statement that locks the order only if it is still the version read (its
// xmin, which every update of the row changes), records the event only if it
// locked it, and stores fn's change and events only if it recorded it. done is
// false when the order changed in between (a cancel, another replica's
// result), and nothing was written: the caller applies fn again under the
// lock, to the order as it now is. A duplicate found by the read costs one
// round trip and does not call fn; one whose first delivery commits after the
// read is found by the statement, and fn's change is dropped.
func (r *OrderGorm) applyRead(ctx context.Context, consumer, eventID, orderID string, fn func(*order.Order) error) (applied, done bool, err error) {
	db := r.db.WithContext(ctx)
	var (
		row       orderRow
		version   string
		processed bool
	)
	// Scanned by hand: gorm's reflective Scan was most of this path's CPU.
	rs, err := db.Raw(`SELECT id, user_id, status, total_cents, currency, payment_id, failure_reason, cancel_reason, created_at, updated_at,
  CAST(xmin AS text), EXISTS (SELECT 1 FROM processed_events WHERE consumer = ? AND event_id = ?)
FROM orders WHERE id = ?`, consumer, eventID, orderID).Rows()
	if err != nil {
		return false, false, fmt.Errorf("read order: %w", err)
	}
	found := rs.Next()
	if found {
		err = rs.Scan(&row.ID, &row.UserID, &row.Status, &row.TotalCents, &row.Currency, &row.PaymentID, &row.FailureReason,
			&row.CancelReason, &row.CreatedAt, &row.UpdatedAt, &version, &processed)
	}
	if cerr := rs.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = rs.Err()
	}
	switch {
	case err != nil:
		return false, false, fmt.Errorf("read order: %w", err)
	case !found:
		return false, true, order.ErrNotFound
	case processed:
		return false, true, nil
	}
	o := fromRow(row, nil)
	before := o.Snapshot()
	if err := fn(o); err != nil {
		return false, true, err
	}
	after, events := o.Snapshot(), o.Events()

	ins, args, err := dedup.Insert(consumer, eventID, "l")
	if err != nil {
		return false, true, err
	}
	var q strings.Builder
	q.WriteString(`WITH l AS (SELECT id FROM orders WHERE id = ? AND CAST(xmin AS text) = ? FOR UPDATE),
d AS (` + ins + `)`)
	args = append([]any{orderID, version}, args...)
	if changed(before, after) {
		// A result that changes nothing (the order already left PENDING) is
		// only recorded: rewriting the row with its own values is a dead tuple.
		q.WriteString(`,
u AS (UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, cancel_reason = ?, updated_at = ?
  WHERE id = ? AND EXISTS (SELECT 1 FROM d) RETURNING 1)`)
		args = append(args, string(after.Status), after.PaymentID, after.FailureReason, string(after.CancelReason), after.UpdatedAt, orderID)
	}
	if len(events) > 0 {
		envs, err := envelopes(events)
		if err != nil {
			return false, true, err
		}
		oi, oargs, err := outbox.Insert(ctx, "EXISTS (SELECT 1 FROM d)", Topic, orderID, envs...)
		if err != nil {
			return false, true, fmt.Errorf("outbox: %w", err)
		}
		q.WriteString(",\ne AS (" + oi + ")")
		args = append(args, oargs...)
	}
	q.WriteString("\nSELECT EXISTS (SELECT 1 FROM l), EXISTS (SELECT 1 FROM d)")
	var locked, first bool
	if err := db.Raw(q.String(), args...).Row().Scan(&locked, &first); err != nil {
		return false, true, fmt.Errorf("record event: %w", err)
	}
	if !locked {
		return false, false, nil
	}
	if first && len(events) > 0 {
		r.notify()
	}
	return first, true, nil
}

// changed reports whether an order's stored columns differ between two
// snapshots of it: only the status columns change after creation.
func changed(a, b order.Snapshot) bool {
	return a.Status != b.Status || a.PaymentID != b.PaymentID || a.FailureReason != b.FailureReason ||
		a.CancelReason != b.CancelReason || !a.UpdatedAt.Equal(b.UpdatedAt)
}

// ExpirePending is order.Repository's: one transaction that reads the
// oldest PENDING orders placed before cutoff (orders_pending_created_at, a
// partial index of the PENDING rows only) and locks them, skipping the rows
// another transaction has locked (FOR UPDATE SKIP LOCKED): a payment result
// being applied under ApplyOnce's lock, a user's cancel, another replica's
// round. A skipped order is settled by whoever holds it or taken by the
// next round; waiting for it would hold the whole batch, and the rows it
// locked, behind one order. A payment result arriving while this holds an
// order waits, then sees the row changed (a new xmin) and takes ApplyOnce's
// locking path, which finds it CANCELLED: a no-op. fn's changes go back in
// one UPDATE per distinct set of new values (one in practice: every order
// of a round is cancelled alike), guarded by status = 'PENDING', and their
// events through the outbox, before COMMIT. On SQLite every transaction is
// BEGIN IMMEDIATE (pkg/database), so the round excludes every other writer
// and no locking clause is needed (its gorm dialect drops it).
func (r *OrderGorm) ExpirePending(ctx context.Context, cutoff time.Time, limit int, fn func(*order.Order) error) (int, error) {
	n := 0
	var events []order.Event
	err := r.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		n, events = 0, nil
		var rows []orderRow
		// 'PENDING' is spelled out, not a parameter: the partial index is
		// only usable when the planner can see the query implies its WHERE.
		err := tx.Clauses(clause.Locking{Strength: clause.LockingStrengthUpdate, Options: clause.LockingOptionsSkipLocked}).
			Where("status = 'PENDING' AND created_at < ?", cutoff.UTC()).Order("created_at").Limit(limit).Find(&rows).Error
		if err != nil {
			return fmt.Errorf("find pending orders: %w", err)
		}
		type values struct {
			status, paymentID, failure, reason string
			updated                            time.Time
		}
		var (
			groups = map[values][]string{}
			seen   []values // first-seen order, so the statements are deterministic
		)
		for _, row := range rows {
			o := fromRow(row, nil)
			before := o.Snapshot()
			if err := fn(o); err != nil {
				return err
			}
			s := o.Snapshot()
			if !changed(before, s) {
				continue
			}
			v := values{string(s.Status), s.PaymentID, s.FailureReason, string(s.CancelReason), s.UpdatedAt.UTC()}
			if _, ok := groups[v]; !ok {
				seen = append(seen, v)
			}
			groups[v] = append(groups[v], s.ID)
			events = append(events, o.Events()...)
			n++
		}
		for _, v := range seen {
			ids := groups[v]
			res := tx.Exec(`UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, cancel_reason = ?, updated_at = ?
WHERE id IN ? AND status = 'PENDING'`, v.status, v.paymentID, v.failure, v.reason, v.updated, ids)
			if res.Error != nil {
				return fmt.Errorf("save expired orders: %w", res.Error)
			}
			if res.RowsAffected != int64(len(ids)) {
				// The rows are locked (or the database is): this is a bug, not a race.
				return fmt.Errorf("save expired orders: %d of %d rows were still PENDING under the lock", res.RowsAffected, len(ids))
			}
		}
		return addEvents(ctx, tx, events)
	})
	if err != nil {
		return 0, fmt.Errorf("expire pending orders before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
	}
	if len(events) > 0 {
		r.notify()
	}
	return n, nil
}

// ForgetKeys deletes idempotency records created before the given time. A
// client retrying after that answers with a new order, so keep them longer
// than any sane retry window (the service keeps 24 h).
//
// It deletes ForgetKeysBatch rows a statement (database.Sweep, as the
// outbox's cleanup does): one DELETE of an hour's expired keys held all
// their row locks and WAL (on SQLite, the write lock every order needs)
// until the last was gone. Rows deleted before an error stay deleted and
// are counted. Migration 0004's index on created_at finds each batch's rows.
func (r *OrderGorm) ForgetKeys(ctx context.Context, before time.Time) (int64, error) {
	n, _, err := forgetKeys.Run(ctx, r.db, nil, before.UTC())
	if err != nil {
		return n, fmt.Errorf("forget idempotency keys: %w", err)
	}
	return n, nil
}

// ForgetKeysBatch is the most idempotency keys one DELETE of ForgetKeys
// removes.
const ForgetKeysBatch = 1000

// forgetKeys is ForgetKeys' sweep. The table's key spans two columns, so
// rows are picked by address (Sweep's empty Key).
var forgetKeys = database.Sweep{Table: "idempotency_keys", Where: "created_at < ?", Batch: ForgetKeysBatch}

// lockOrder reads one order FOR UPDATE (PostgreSQL; SQLite serialises
// writers anyway and its gorm dialect drops the clause). Without lines the
// aggregate has none loaded: only for changes that never read or render them.
func lockOrder(tx *gorm.DB, lines bool, where string, args ...any) (*order.Order, error) {
	var row orderRow
	if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where(where, args...).Take(&row).Error; err != nil {
		return nil, notFound(err, "lock order")
	}
	if !lines {
		return fromRow(row, nil), nil
	}
	os, err := withItems(tx, []orderRow{row})
	if err != nil {
		return nil, err
	}
	return os[0], nil
}

// saveOrder writes the mutable columns if they differ from before, and the
// order's new events. Lines never change after creation. A change that
// changes nothing (a repeated cancel, a result for an order that left
// PENDING) writes no row: rewriting it with its own values would be a dead
// tuple and a new row version, and every payment result that read the order
// before it would fall back to ApplyOnce's locking transaction.
func saveOrder(ctx context.Context, tx *gorm.DB, before order.Snapshot, o *order.Order) error {
	if s := o.Snapshot(); changed(before, s) {
		// Plain SQL rather than Updates(map): gorm sorts and reflects over the map
		// on every call, on the path of every payment result.
		err := tx.Exec("UPDATE orders SET status = ?, payment_id = ?, failure_reason = ?, cancel_reason = ?, updated_at = ? WHERE id = ?",
			string(s.Status), s.PaymentID, s.FailureReason, string(s.CancelReason), s.UpdatedAt, s.ID).Error
		if err != nil {
			return fmt.Errorf("save order: %w", err)
		}
	}
	return addEvents(ctx, tx, o.Events())
}

func withItems(db *gorm.DB, rows []orderRow) ([]*order.Order, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	var items []orderItemRow
	if err := db.Where("order_id IN ?", ids).Order("order_id, line").Find(&items).Error; err != nil {
		return nil, fmt.Errorf("load order items: %w", err)
	}
	byOrder := make(map[string][]order.Line, len(rows))
	for _, it := range items {
		byOrder[it.OrderID] = append(byOrder[it.OrderID], order.Line{SKU: it.SKU, Name: it.Name, Quantity: it.Quantity, UnitPriceCents: it.UnitPriceCents})
	}
	out := make([]*order.Order, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r, byOrder[r.ID])
	}
	return out, nil
}

func fromRow(r orderRow, lines []order.Line) *order.Order {
	reason := order.CancelReason(r.CancelReason)
	if reason == "" && order.Status(r.Status) == order.Cancelled {
		// Cancelled before migration 0003, or by a replica of the release
		// before it: only a user could cancel then.
		reason = order.CancelledByUser
	}
	return order.FromSnapshot(order.Snapshot{
		ID: r.ID, UserID: r.UserID, Status: order.Status(r.Status), Lines: lines,
		TotalCents: r.TotalCents, Currency: r.Currency, PaymentID: r.PaymentID, FailureReason: r.FailureReason,
		CancelReason: reason, CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(),
	})
}

func toRow(s order.Snapshot) orderRow {
	return orderRow{ID: s.ID, UserID: s.UserID, Status: string(s.Status), TotalCents: s.TotalCents, Currency: s.Currency,
		PaymentID: s.PaymentID, FailureReason: s.FailureReason, CancelReason: string(s.CancelReason),
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt}
}

func toItems(s order.Snapshot) []orderItemRow {
	items := make([]orderItemRow, len(s.Lines))
	for i, l := range s.Lines {
		items[i] = orderItemRow{OrderID: s.ID, Line: i, SKU: l.SKU, Name: l.Name, Quantity: l.Quantity, UnitPriceCents: l.UnitPriceCents}
	}
	return items
}

func notFound(err error, what string) error {
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return order.ErrNotFound
	}
	return fmt.Errorf("%s: %w", what, err)
}

// addEvents is where domain events become outbox rows in a transaction.
func addEvents(ctx context.Context, tx *gorm.DB, events []order.Event) error {
	envs, err := envelopes(events)
	if err != nil {
		return err
	}
	for i, env := range envs {
		if err := outbox.Add(ctx, tx, Topic, events[i].OrderID(), env); err != nil {
			return fmt.Errorf("outbox %s: %w", env.Type, err)
		}
	}
	return nil
}

// envelopes maps domain events to their CloudEvents, for Add or Insert.
func envelopes(events []order.Event) ([]event.Envelope, error) {
	envs := make([]event.Envelope, len(events))
	for i, e := range events {
		env, err := Envelope(e)
		if err != nil {
			return nil, err
		}
		envs[i] = env
	}
	return envs, nil
}
