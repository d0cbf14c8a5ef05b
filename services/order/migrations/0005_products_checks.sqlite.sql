-- The CHECKs of the .postgres.sql file. SQLite cannot add a constraint to a
-- table, so the table is built again with them and its rows copied (a
-- handful: the seeded catalogue); nothing references products by key.
-- +goose Up
CREATE TABLE products_checked (
    sku         TEXT PRIMARY KEY CHECK (sku <> ''),
    name        TEXT NOT NULL CHECK (name <> ''),
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    currency    TEXT NOT NULL CHECK (currency <> '')
);
INSERT INTO products_checked (sku, name, price_cents, currency) SELECT sku, name, price_cents, currency FROM products;
DROP TABLE products;
ALTER TABLE products_checked RENAME TO products;

-- +goose Down
CREATE TABLE products_unchecked (
    sku         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    currency    TEXT NOT NULL
);
INSERT INTO products_unchecked (sku, name, price_cents, currency) SELECT sku, name, price_cents, currency FROM products;
DROP TABLE products;
ALTER TABLE products_unchecked RENAME TO products;
