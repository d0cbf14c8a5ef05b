package migrations

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// deadLetterOrderFill is version 0004: it names the order of the dead
// letters the service now names (dead_letters.order_id) but recorded before
// it did: those of an order.created from before 0003 added the column, and
// those of an order.cancelled from before bb0204e. Unnamed, a cancel did
// not find the dead charge (it only flagged the row, which then stayed
// PENDING with its key unvoided) and the settle round found neither.
//
// As the consumer names them, only messages given up on after their
// retries are named: an order.created or order.cancelled whose reason is
// the retry's "still failing after N deliveries: ..." (its wording since
// the first release). A message refused as invalid neither charged nor
// cancelled the payment and stays unnamed, as it would be recorded today:
// named, a cancel would take an invalid order.created for a dead charge and
// void a charge still in flight. The order id is the payload's order_id
// (the event's data, kept exactly, base64); a payload that does not decode
// or holds no printable id leaves the row unnamed.
//
// It is idempotent: it reads only unnamed rows, and one it leaves unnamed
// it leaves so again.
func deadLetterOrderFill(ctx context.Context, tx *sql.Tx) error {
	type unnamed struct{ id, payload string }
	// The rows are listed first: the transaction's one connection cannot
	// update while it streams them. They are few: dead letters are rare.
	var todo []unnamed
	rows, err := tx.QueryContext(ctx, `SELECT id, payload_base64 FROM dead_letters
WHERE order_id = '' AND event_type IN ('order.created', 'order.cancelled') AND reason LIKE 'still failing after %'`)
	if err != nil {
		return fmt.Errorf("read unnamed dead letters: %w", err)
	}
	for rows.Next() {
		var u unnamed
		if err := rows.Scan(&u.id, &u.payload); err != nil {
			rows.Close()
			return fmt.Errorf("read unnamed dead letters: %w", err)
		}
		todo = append(todo, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read unnamed dead letters: %w", err)
	}
	for _, u := range todo {
		orderID := payloadOrderID(u.payload)
		if orderID == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, "UPDATE dead_letters SET order_id = $1 WHERE id = $2 AND order_id = ''", orderID, u.id); err != nil {
			return fmt.Errorf("name the order of dead letter %s: %w", u.id, err)
		}
	}
	return nil
}

// payloadOrderID is the order_id of a dead letter's stored payload, "" if
// it has none the service would have accepted (an order id the consumer
// took past its checks is printable text).
func payloadOrderID(payloadBase64 string) string {
	b, err := base64.StdEncoding.DecodeString(payloadBase64)
	if err != nil {
		return ""
	}
	var data struct {
		OrderID string `json:"order_id"`
	}
	if json.Unmarshal(b, &data) != nil || !utf8.ValidString(data.OrderID) || strings.ContainsFunc(data.OrderID, unicode.IsControl) {
		return ""
	}
	return data.OrderID
}
