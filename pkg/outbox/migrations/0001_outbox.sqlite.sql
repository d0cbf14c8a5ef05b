-- +goose Up
-- SQLite twin of 0001_outbox.postgres.sql (AUTOINCREMENT keeps ids from ever being reused).
-- Messages waiting to be published, written in the same transaction as the state change they announce.
-- id orders publication: the relay publishes a key's rows in id order, one at a time.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    topic           TEXT        NOT NULL,
    key             TEXT        NOT NULL,
    event_id        TEXT        NOT NULL,
    event_type      TEXT        NOT NULL,
    headers         TEXT        NOT NULL,
    payload         BLOB        NOT NULL,
    created_at      TIMESTAMP   NOT NULL,
    attempts        INTEGER     NOT NULL DEFAULT 0,
    last_error      TEXT        NOT NULL DEFAULT '',
    next_attempt_at BIGINT      NOT NULL DEFAULT 0,
    sent_at         TIMESTAMP
);
-- The relay's scans touch only unsent rows; partial indexes keep them small however many sent rows are kept.
CREATE INDEX outbox_pending ON outbox (id) WHERE sent_at IS NULL;
CREATE INDEX outbox_pending_key ON outbox (topic, key, id) WHERE sent_at IS NULL;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;

-- +goose Down
DROP TABLE outbox;
