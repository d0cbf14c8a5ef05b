-- +goose Up
-- The compensation of a cancelled order. Statuses REFUNDED (a succeeded
-- charge given back) and CANCELLED (a claim made by order.cancelled before
-- any charge) need no schema change: status is free text. What does is the
-- flag an order.cancelled leaves on a charge still in flight, so that the
-- worker finishing that charge refunds it.
ALTER TABLE payments ADD COLUMN cancel_requested BOOLEAN NOT NULL DEFAULT FALSE;

-- +goose Down
ALTER TABLE payments DROP COLUMN cancel_requested;
