-- +goose Up
-- The service deletes expired refresh tokens in batches (adapters.SessionGorm.DeleteExpired); the index lets each batch
-- find them without reading the whole table.
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

-- +goose Down
DROP INDEX refresh_tokens_expires;
