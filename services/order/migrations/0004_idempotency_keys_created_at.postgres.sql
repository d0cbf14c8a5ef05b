-- Housekeeping forgets keys older than 24 hours (ForgetKeys) by created_at,
-- which had no index: each batch read the whole table to find its rows.
-- Built concurrently so a table with a day of keys keeps taking orders
-- meanwhile (docs/conventions.md); the SQLite file builds it plainly.
-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS idempotency_keys_created_at;
CREATE INDEX CONCURRENTLY idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP INDEX CONCURRENTLY IF EXISTS idempotency_keys_created_at;
