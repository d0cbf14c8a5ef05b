-- ForgetKeys' index on created_at (see the .postgres.sql file); SQLite has
-- no CONCURRENTLY.
-- +goose Up
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX idempotency_keys_created_at;
