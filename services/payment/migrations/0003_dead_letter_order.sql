-- +goose Up
-- The order an order.created dead letter was for. A cancel that finds its
-- order's payment PENDING normally only flags it and leaves the void to the
-- next delivery of the order.created; once that message is dead-lettered no
-- delivery is left, so the cancel looks here and voids the key itself.
-- Empty for any other message (and for dead letters recorded before this
-- column, which a cancel therefore does not find).
ALTER TABLE dead_letters ADD COLUMN order_id TEXT NOT NULL DEFAULT '';
CREATE INDEX dead_letters_order_id ON dead_letters (order_id);

-- +goose Down
DROP INDEX dead_letters_order_id;
ALTER TABLE dead_letters DROP COLUMN order_id;
