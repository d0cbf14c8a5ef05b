-- SQLite only: what 0005's rebuild still let in, which PostgreSQL refuses by
-- itself. SQLite lets a TEXT PRIMARY KEY hold NULL (a legacy quirk, unlike
-- an INTEGER one), and a BIGINT column keeps a value it cannot convert as
-- it came ('abc' stays text, 1.5 a real) while CHECK (price_cents > 0)
-- passes (text compares above any number). A text price failed
-- every read of the catalogue (a Scan error: no order, no listing); a NULL
-- SKU was read as "", which Check refuses. PostgreSQL's key is
-- NOT NULL and its BIGINT refuses a value it cannot cast, so it needs no
-- 0006. The table is rebuilt as 0005 did (nothing references products).
-- +goose Up
CREATE TABLE products_typed (
    sku         TEXT NOT NULL PRIMARY KEY CHECK (sku <> ''),
    name        TEXT NOT NULL CHECK (name <> ''),
    price_cents BIGINT NOT NULL CHECK (typeof(price_cents) = 'integer' AND price_cents > 0),
    currency    TEXT NOT NULL CHECK (currency <> '')
);
INSERT INTO products_typed (sku, name, price_cents, currency) SELECT sku, name, price_cents, currency FROM products;
DROP TABLE products;
ALTER TABLE products_typed RENAME TO products;

-- +goose Down
CREATE TABLE products_untyped (
    sku         TEXT PRIMARY KEY CHECK (sku <> ''),
    name        TEXT NOT NULL CHECK (name <> ''),
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    currency    TEXT NOT NULL CHECK (currency <> '')
);
INSERT INTO products_untyped (sku, name, price_cents, currency) SELECT sku, name, price_cents, currency FROM products;
DROP TABLE products;
ALTER TABLE products_untyped RENAME TO products;
