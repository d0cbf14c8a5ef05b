-- +goose Up
-- One payment per order: the UNIQUE order_id is what makes a redelivered
-- order.created converge on the existing charge instead of a second one.
CREATE TABLE payments (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents > 0),
    currency     TEXT NOT NULL,
    status       TEXT NOT NULL,
    reason       TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL
);
CREATE INDEX payments_user_id ON payments (user_id, id);

-- Messages the consumer gave up on, with why. The payload is base64 because
-- a message that could not be parsed may not even be valid UTF-8.
CREATE TABLE dead_letters (
    id             TEXT PRIMARY KEY,
    consumer       TEXT NOT NULL,
    subject        TEXT NOT NULL,
    msg_id         TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    event_type     TEXT NOT NULL,
    reason         TEXT NOT NULL,
    payload_base64 TEXT NOT NULL,
    headers        TEXT NOT NULL,
    created_at     TIMESTAMP NOT NULL
);
CREATE INDEX dead_letters_created_at ON dead_letters (created_at);

-- +goose Down
DROP TABLE dead_letters;
DROP TABLE payments;
