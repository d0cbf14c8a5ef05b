-- +goose Up
-- email_visible is the address an account's email reads as where it is displayed (user.VisibleEmail), stored only
-- where that differs from email: accounts an older release stored with an invisible character in their address
-- (sign-up refuses those since 85d5277). Sign-up looks a new address up in both columns, so the address without the
-- character cannot register beside such an account. Sparse, its index is partial: it holds those few rows and not
-- one entry per account, and "email_visible = ?" implies the index's condition on both dialects. Version 6, a Go
-- step, fills it: SQL has no Unicode tables. The column is nullable, with no default, so adding it rewrites nothing.
ALTER TABLE users ADD COLUMN email_visible TEXT;
CREATE INDEX users_email_visible ON users (email_visible) WHERE email_visible IS NOT NULL;

-- +goose Down
DROP INDEX users_email_visible;
ALTER TABLE users DROP COLUMN email_visible;
