-- +goose Up
-- The demo catalogue. Prices are in cents; CAM-1 is priced so that two of
-- them cross the payment service's default decline limit (1000.00 EUR).
INSERT INTO products (sku, name, price_cents, currency) VALUES
    ('TEA-GREEN-100G', 'Longjing green tea, 100 g', 1890, 'EUR'),
    ('TEA-OOLONG-100G', 'Tieguanyin oolong, 100 g', 2250, 'EUR'),
    ('CUP-PORCELAIN', 'Porcelain tea cup', 1200, 'EUR'),
    ('POT-YIXING', 'Yixing clay teapot', 6400, 'EUR'),
    ('BOOK-SHANHAI', 'Classic of Mountains and Seas (paperback)', 1599, 'EUR'),
    ('MAP-SCROLL', 'Silk map scroll', 4800, 'EUR'),
    ('INK-SET', 'Calligraphy ink set', 3500, 'EUR'),
    ('CAM-1', 'Mirrorless camera', 89900, 'EUR');

-- +goose Down
DELETE FROM products WHERE sku IN ('TEA-GREEN-100G', 'TEA-OOLONG-100G', 'CUP-PORCELAIN', 'POT-YIXING',
    'BOOK-SHANHAI', 'MAP-SCROLL', 'INK-SET', 'CAM-1');
