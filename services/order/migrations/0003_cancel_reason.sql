-- +goose Up
-- Why an order was cancelled: 'user' (its user asked) or 'payment_timeout'
-- (left PENDING past ORDER_PENDING_TIMEOUT). Rows cancelled before this
-- column existed keep '', which the service reads as 'user': until now only
-- a user could cancel, and a replica still on the previous release during a
-- rolling upgrade writes '' for a user's cancel too. No rewrite of the table.
ALTER TABLE orders ADD COLUMN cancel_reason TEXT NOT NULL DEFAULT '';
-- The expiry round's scan: the oldest PENDING orders placed before a cutoff.
-- Partial, so it holds only the orders still waiting for payment, however
-- many orders the table keeps.
CREATE INDEX orders_pending_created_at ON orders (created_at) WHERE status = 'PENDING';

-- +goose Down
DROP INDEX orders_pending_created_at;
ALTER TABLE orders DROP COLUMN cancel_reason;
