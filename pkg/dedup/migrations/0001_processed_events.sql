-- +goose Up
-- One row per (consumer, event) handled. Portable SQL: the same file runs on PostgreSQL and SQLite.
-- processed_at is written in UTC by package dedup.
CREATE TABLE processed_events (
    consumer     TEXT      NOT NULL,
    event_id     TEXT      NOT NULL,
    processed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);

-- +goose Down
DROP TABLE processed_events;
