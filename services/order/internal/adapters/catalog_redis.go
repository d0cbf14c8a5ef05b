package adapters

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
)

// CatalogKey is the base of the cached catalogue's Redis key (the service
// adds the migration version, CatalogKeyFor). The v1 suffix lets a change of
// the cached shape roll out without reading stale bytes.
const CatalogKey = "shanhai:order:catalog:v1"

// CatalogRedis is a read-through cache in front of the catalogue. Every order
// prices its lines from it, so it sits on the hot path of POST /orders.
//
// The catalogue is only written by migrations, so the service's key names
// the newest migration (CatalogKeyFor) and a TTL does the rest. If Redis is
// down the cache is skipped, not fatal: the database can answer alone, just
// more slowly.
type CatalogRedis struct {
	next catalog.Repository
	rdb  redis.UniversalClient
	ttl  time.Duration
	key  string
	log  *slog.Logger
	// refused counts catalogues catalog.Check refused, by source: "cache"
	// (reloaded) or "database" (served uncached). A steady "database" rate is
	// the products table to mend, and the cache out of use meanwhile.
	refused metric.Int64Counter
}

func NewCatalogRedis(next catalog.Repository, rdb redis.UniversalClient, ttl time.Duration, log *slog.Logger) *CatalogRedis {
	if log == nil {
		log = slog.Default()
	}
	refused, _ := otel.Meter("shanhai/order").Int64Counter("shanhai.order.catalog.refused",
		metric.WithDescription("catalogues catalog.Check refused, by source: cache (reloaded from the database) or database (served uncached)"))
	return &CatalogRedis{next: next, rdb: rdb, ttl: ttl, key: CatalogKey, log: log, refused: refused}
}

// WithKey moves the cache to another key (tests use a private one).
func (c *CatalogRedis) WithKey(key string) *CatalogRedis {
	c.key = key
	return c
}

type cachedProduct struct {
	SKU        string `json:"sku"`
	Name       string `json:"name"`
	PriceCents int64  `json:"price_cents"`
	Currency   string `json:"currency"`
}

func (c *CatalogRedis) All(ctx context.Context) ([]catalog.Product, error) {
	raw, err := c.rdb.Get(ctx, c.key).Bytes()
	switch {
	case err != nil && ctx.Err() != nil:
		// The caller gave up (or its deadline passed), not Redis: a warning
		// blamed a healthy Redis for every client that left, and the
		// database read on the same context could only fail too.
		return nil, fmt.Errorf("read catalogue: %w", ctx.Err())
	case err == nil:
		out, rerr := decodeCatalog(raw)
		if rerr == nil {
			return out, nil
		}
		c.log.WarnContext(ctx, "catalog cache holds unreadable value; reloading", "key", c.key, "err", rerr)
		c.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("source", "cache")))
	case !errors.Is(err, redis.Nil):
		c.log.WarnContext(ctx, "catalog cache unavailable; reading database", "err", err)
	}
	ps, err := c.next.All(ctx)
	if err != nil {
		return nil, err
	}
	if err := catalog.Check(ps); err != nil {
		// The table's CHECKs (migration 0005) refuse what Check refuses,
		// so only a database whose constraints were dropped by hand gets
		// here. Cached, the next read would refuse it, read the database
		// and write it again, a warning blaming the cache at every reload.
		// The database is the catalogue, so it is served; only the cache
		// is skipped, and the fault is put where it is. CatalogMemo in
		// front bounds these reads to one per CatalogMemoTTL per process.
		c.log.ErrorContext(ctx, "products table holds a catalogue catalog.Check refuses; serving it uncached", "err", err)
		c.refused.Add(ctx, 1, metric.WithAttributes(attribute.String("source", "database")))
		return ps, nil
	}
	cached := make([]cachedProduct, len(ps))
	for i, p := range ps {
		cached[i] = cachedProduct(p)
	}
	buf, err := json.Marshal(cached)
	if err != nil {
		return nil, fmt.Errorf("encode catalog cache: %w", err)
	}
	if err := c.rdb.Set(ctx, c.key, buf, c.ttl).Err(); err != nil {
		c.log.WarnContext(ctx, "catalog cache write failed", "err", err)
	}
	return ps, nil
}

// decodeCatalog reads a cached catalogue: JSON that decodes is not enough,
// it must be one the database could hold, since every order is priced from
// it. catalog.Check is the products table's rules (its key and CHECKs), so
// it tells.
func decodeCatalog(raw []byte) ([]catalog.Product, error) {
	var cached []cachedProduct
	if err := json.Unmarshal(raw, &cached); err != nil {
		return nil, err
	}
	if len(cached) == 0 {
		return nil, catalog.ErrEmpty
	}
	out := make([]catalog.Product, len(cached))
	for i, p := range cached {
		out[i] = catalog.Product(p)
	}
	if err := catalog.Check(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Invalidate drops the cached catalogue (used after reseeding and in tests).
func (c *CatalogRedis) Invalidate(ctx context.Context) error {
	if err := c.rdb.Del(ctx, c.key).Err(); err != nil {
		return fmt.Errorf("invalidate catalog cache: %w", err)
	}
	return nil
}

// CatalogKeyFor is the cache key of the catalogue that the migration set fsys
// leaves: base and the set's newest version (CatalogKey:m2). Only migrations
// change the catalogue, so an instance of a release that adds one reads and
// fills a key of its own at once. With one key for every release, it sold
// from the last release's cached catalogue for up to the TTL: old prices,
// and products the migration added refused as unknown.
func CatalogKeyFor(base string, fsys fs.FS) (string, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return "", fmt.Errorf("catalogue version: %w", err)
	}
	newest := int64(-1)
	for _, n := range names {
		digits := n[:len(n)-len(strings.TrimLeft(n, "0123456789"))]
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return "", fmt.Errorf("catalogue version: migration %q has no version number", n)
		}
		newest = max(newest, v)
	}
	if newest < 0 {
		return "", errors.New("catalogue version: no migrations")
	}
	return fmt.Sprintf("%s:m%d", base, newest), nil
}
