-- The products table held what catalog.Check refuses: an empty SKU, name
-- or currency (TEXT NOT NULL allows ''). The service served such a
-- catalogue but could not cache it, and a cached value was checked against
-- rules the table did not keep. Now the table refuses them too, so what
-- Check accepts and what the database can hold are the same. price_cents
-- > 0 has been a CHECK since 0001. A database already holding such a row
-- fails this migration, naming the constraint: fix the row, then start.
-- +goose Up
ALTER TABLE products ADD CONSTRAINT products_sku_check CHECK (sku <> '');
ALTER TABLE products ADD CONSTRAINT products_name_check CHECK (name <> '');
ALTER TABLE products ADD CONSTRAINT products_currency_check CHECK (currency <> '');

-- +goose Down
ALTER TABLE products DROP CONSTRAINT products_currency_check;
ALTER TABLE products DROP CONSTRAINT products_name_check;
ALTER TABLE products DROP CONSTRAINT products_sku_check;
