// Package outbox publishes events to Kafka exactly when the state change they describe commits.
//
// A service writes the event with Add inside the transaction that changes its state; a Relay later reads unsent rows,
// publishes them (acks=all) and marks them sent. If the process dies between publish and mark, the row is published
// again after restart: delivery is at least once, and consumers drop duplicates by event id (package dedup).
//
// Several replicas may run a Relay on the same table. On PostgreSQL each leases the rows it claims in one UPDATE ...
// RETURNING (rows locked by a concurrent claim are skipped) for longer than its publish may take, then marks them sent,
// so no row is published by two relays at once; rows leased by a relay that died wait out the lease
// (RelayOptions.Lease) and are then sent again. Leases and backoffs are written and compared in PostgreSQL's clock,
// so replicas whose own clocks disagree still keep each other's leases. On SQLite every transaction
// starts with BEGIN IMMEDIATE (see package database), so a relay's claim-publish-mark transaction holds the database's only
// write lock: other relays, in this process or another, wait for it and then see the rows marked sent. The cost is that
// the service's own writes wait while a batch is being published (bounded by RelayOptions.PublishTimeout): acceptable
// for the embedded mode SQLite serves, and the reason production runs PostgreSQL.
//
// Rounds: a Relay claims, publishes and marks rows in rounds, each started by a Nudge (a service nudges after every
// commit that added rows) or by its poll timer. Under steady load a round that claims rows starts no sooner than
// RelayOptions.Linger (10 ms) after the previous one did, so rows committed meanwhile share it: each round costs two
// PostgreSQL statements and a produce request per partition, and at 250 rows/s a round per nudge carried 1.2-1.6 rows.
// A row nudged after a quiet spell still goes out at once.
//
// Ordering: a key's rows are published one at a time in id order. A relay only claims a row when no older unsent row with
// the same topic and key exists, so a failing row holds back later rows of its key (and only of its key) until it succeeds.
// A row set aside (see Failures) is the exception: it ends its turn unpublished, its key's later rows go out after it,
// and a consumer of that key sees a gap it is not told of. The ERROR log, outbox.messages.set_aside and the row kept
// with its last_error are what tell an operator; once mended (clearing its sent_at), the row is sent after them.
// Ids follow insertion, not commit order: two transactions racing on the same key may commit out of id order, which is why
// producers should serialise writes per aggregate (they do, by locking or updating the aggregate's row). Rows with an
// empty key form one ordered stream of their own (and Kafka spreads them over partitions at random).
//
// Failures: a row Kafka refuses is retried on a capped backoff until Kafka takes it, never dropped; it is logged at its
// 1st, 2nd, 4th, 8th... attempt (at ERROR when the refusal is one no retry mends by itself, an ACL say), and every
// attempt is counted in outbox.messages.failed. A row too large for Kafka, or whose stored headers cannot be read, is
// set aside instead (sent_at with its last_error; logged at ERROR, counted in outbox.messages.set_aside, kept by
// Cleanup). outbox.messages.published counts a row once, however often it was sent.
package outbox

import (
	"context"
	"database/sql/driver"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"gorm.io/gorm"

	"github.com/shanhai-dev/shanhai/pkg/event"
	"github.com/shanhai-dev/shanhai/pkg/migrate"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations creates the outbox table; apply it with migrate.Up next to the service's own set.
// Its versions are tracked in schema_migrations_outbox.
var Migrations fs.FS = migrate.Named("outbox", mustSub(migrations, "migrations"))

// Message is one row of the outbox table.
type Message struct {
	ID        int64  `gorm:"primaryKey;autoIncrement"`
	Topic     string `gorm:"not null"`
	Key       string `gorm:"not null"`
	EventID   string `gorm:"not null"`
	EventType string `gorm:"not null"`
	// Headers is the JSON object of message headers: ce_* attributes and the W3C trace context of the writer.
	Headers   string    `gorm:"not null"`
	Payload   []byte    `gorm:"not null"`
	CreatedAt time.Time `gorm:"not null"`
	Attempts  int       `gorm:"not null;default:0"`
	LastError string    `gorm:"not null;default:''"`
	// NextAttemptAt is unix milliseconds: an integer compares the same on every dialect.
	NextAttemptAt int64 `gorm:"not null;default:0"`
	// SentAt is when the row left the queue: published (LastError empty), or set aside because Kafka can never take
	// it (too large, unreadable headers; LastError says so, and Cleanup keeps the row).
	SentAt *time.Time
}

// TableName fixes the table name used by the migrations.
func (Message) TableName() string { return "outbox" }

// Add stores e for publication to topic with the given key (the aggregate id, which picks the partition). Call it with
// the transaction that commits the state change e describes. The current trace context of ctx (and baggage) is stored
// with the row through the global propagator, so the relay's producer span continues the request's trace.
func Add(ctx context.Context, tx *gorm.DB, topic, key string, e event.Envelope) error {
	m, err := newMessage(ctx, topic, key, e)
	if err != nil {
		return err
	}
	if err := tx.WithContext(ctx).Create(&m).Error; err != nil {
		return fmt.Errorf("outbox add %s %s: %w", e.Type, e.ID, err)
	}
	return nil
}

// Insert is Add for PostgreSQL statements that change state and store their events at once: it returns an INSERT of
// the rows of es (gorm's ? placeholders, with its arguments) that inserts them only where cond holds, for the caller
// to use as a data-modifying WITH clause, e.g.
//
//	WITH u AS (UPDATE payments SET ... WHERE id = ? AND status = ? RETURNING id), e AS (<Insert with cond "EXISTS (SELECT 1 FROM u)">) SELECT ...
//
// One statement is atomic without BEGIN and COMMIT, so the state change and its events still commit together, in one
// round trip instead of the four of a transaction (BEGIN, change, Add, COMMIT). SQLite has no INSERT inside WITH:
// there callers use Add in a transaction.
func Insert(ctx context.Context, cond, topic, key string, es ...event.Envelope) (string, []any, error) {
	if len(es) == 0 {
		return "", nil, errors.New("outbox insert: no events")
	}
	var b strings.Builder
	b.WriteString("INSERT INTO outbox (topic, key, event_id, event_type, headers, payload, created_at) SELECT v.* FROM (VALUES ")
	args := make([]any, 0, 7*len(es))
	for i, e := range es {
		m, err := newMessage(ctx, topic, key, e)
		if err != nil {
			return "", nil, err
		}
		if i > 0 {
			b.WriteString(", ")
		}
		// Types are spelled out: inside a sub-select PostgreSQL would read an untyped parameter as text.
		b.WriteString("(CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS text), CAST(? AS bytea), CAST(? AS timestamptz))")
		args = append(args, m.Topic, m.Key, m.EventID, m.EventType, m.Headers, bytea(m.Payload), m.CreatedAt)
	}
	b.WriteString(") AS v WHERE ")
	b.WriteString(cond)
	return b.String(), args, nil
}

// bytea passes a payload to gorm's Raw and Exec as one value: they expand a plain []byte argument into a list.
type bytea []byte

func (b bytea) Value() (driver.Value, error) { return []byte(b), nil }

// newMessage validates e and turns it into its row, with ctx's trace context among the headers.
func newMessage(ctx context.Context, topic, key string, e event.Envelope) (Message, error) {
	if topic == "" {
		return Message{}, errors.New("outbox add: empty topic")
	}
	if !validTopic(topic) {
		return Message{}, fmt.Errorf("outbox add: %q is not a Kafka topic name (at most 249 of a-z A-Z 0-9 . _ -, not . or ..)", topic)
	}
	if err := e.Validate(); err != nil {
		return Message{}, fmt.Errorf("outbox add: %w", err)
	}
	h := e.Headers()
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(h))
	hj, err := json.Marshal(h)
	if err != nil {
		return Message{}, fmt.Errorf("outbox add: headers: %w", err)
	}
	payload := []byte(e.Data)
	if payload == nil {
		payload = []byte{}
	}
	return Message{
		Topic:     topic,
		Key:       key,
		EventID:   e.ID,
		EventType: e.Type,
		Headers:   string(hj),
		Payload:   payload,
		CreatedAt: time.Now().UTC(),
	}, nil
}

// validTopic applies Kafka's rule for topic names. A row for a topic Kafka never takes would be stored and then
// retried by the relay for good (the broker answers it as an unknown topic, which may yet be created), holding its
// key's later rows behind it: refusing it here fails the writer's transaction instead, where the mistake is.
func validTopic(topic string) bool {
	if len(topic) > 249 || topic == "." || topic == ".." {
		return false
	}
	for i := 0; i < len(topic); i++ {
		switch c := topic[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

func mustSub(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		panic(err) // only on a malformed constant path
	}
	return sub
}
