package adapters_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/shanhai-dev/shanhai/pkg/redisurl"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
)

// countingCatalog counts reads that reach the real repository behind the cache.
type countingCatalog struct {
	next  catalog.Repository
	reads atomic.Int32
}

func (c *countingCatalog) All(ctx context.Context) ([]catalog.Product, error) {
	c.reads.Add(1)
	return c.next.All(ctx)
}

// testRedis is a client of the test Redis, closed when t ends.
func testRedis(t *testing.T) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(testenv.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestCatalogGormAndRedisCache(t *testing.T) {
	ctx := context.Background()
	rdb := testRedis(t)
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			key := "test:order:catalog:" + uuid.NewString()
			t.Cleanup(func() { rdb.Del(context.Background(), key) })
			src := &countingCatalog{next: adapters.NewCatalogGorm(db)}
			cache := adapters.NewCatalogRedis(src, rdb, time.Minute, nil).WithKey(key)

			first, err := cache.All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(first) != 8 || catalog.Index(first)["CAM-1"].PriceCents != 89900 {
				t.Fatalf("seeded catalogue = %+v", first)
			}
			second, err := cache.All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if src.reads.Load() != 1 {
				t.Fatalf("database reads = %d after two calls, want 1 (second from Redis)", src.reads.Load())
			}
			if len(second) != len(first) || second[3] != first[3] {
				t.Fatalf("cached catalogue differs: %+v vs %+v", second, first)
			}
			if ttl := rdb.TTL(ctx, key).Val(); ttl <= 0 || ttl > time.Minute {
				t.Fatalf("cache TTL = %v, want (0, 1m]", ttl)
			}
			// A corrupt cached value is replaced from the database.
			rdb.Set(ctx, key, "not json", time.Minute)
			if ps, err := cache.All(ctx); err != nil || len(ps) != 8 {
				t.Fatalf("after corruption: %v, %v", ps, err)
			}
			if src.reads.Load() != 2 {
				t.Fatalf("database reads = %d, want 2 after corruption", src.reads.Load())
			}
			if err := cache.Invalidate(ctx); err != nil {
				t.Fatal(err)
			}
			if rdb.Exists(ctx, key).Val() != 0 {
				t.Fatal("invalidate left the key")
			}
		})
	}
}

func TestCatalogCacheSurvivesRedisOutage(t *testing.T) {
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			// Nothing listens on port 1: every Redis call fails fast.
			dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
			defer dead.Close()
			cache := adapters.NewCatalogRedis(adapters.NewCatalogGorm(db), dead, time.Minute, nil)
			ps, err := cache.All(context.Background())
			if err != nil || len(ps) != 8 {
				t.Fatalf("with Redis down: %v, %v", ps, err)
			}
		})
	}
}

// TestCatalogCacheSurvivesAHungRedis: a Redis that accepts connections and
// never answers (paused, or lost behind a network partition) must be
// skipped like one that refuses them. The request's time is spent reading
// the database, not waiting for the cache until the deadline takes both.
func TestCatalogCacheSurvivesAHungRedis(t *testing.T) {
	addr := testenv.Hung(t)
	// The service's client options.
	opt, err := redisurl.Parse("redis://" + addr + "/0")
	if err != nil {
		t.Fatal(err)
	}
	hung := redis.NewClient(opt)
	t.Cleanup(func() { hung.Close() })
	for name, db := range stores(t) {
		t.Run(name, func(t *testing.T) {
			cache := adapters.NewCatalogRedis(adapters.NewCatalogGorm(db), hung, time.Minute, nil)
			// A caller's deadline (X-Request-Timeout-Ms) well above a database read.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			ps, err := cache.All(ctx)
			if err != nil || len(ps) != 8 {
				t.Fatalf("with Redis hung: %d products, %v", len(ps), err)
			}
		})
	}
}

// TestCatalogCacheBlamesNoRedisForACallersDeadline: a read whose caller's
// context has ended fails with the context's error and logs nothing about
// Redis. It logged "catalog cache unavailable; reading database" at WARN for
// a Redis that was fine (the Get had failed on the caller's context), then
// read the database on the same dead context: every client that gave up
// while its order priced looked, to an operator, like a Redis outage.
func TestCatalogCacheBlamesNoRedisForACallersDeadline(t *testing.T) {
	rdb := testRedis(t)
	logs := &testenv.LogBuffer{}
	src := &countingCatalog{next: staticCatalog{{SKU: "TEA", Name: "Tea", PriceCents: 100, Currency: "EUR"}}}
	cache := adapters.NewCatalogRedis(src, rdb, time.Minute, slog.New(slog.NewJSONHandler(logs, nil))).WithKey("test:order:catalog:" + uuid.NewString())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := cache.All(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the caller's context.Canceled", err)
	}
	if s := logs.String(); strings.Contains(s, "WARN") {
		t.Errorf("a caller's ended context was logged as a Redis problem:\n%s", s)
	}
	if n := src.reads.Load(); n != 0 {
		t.Errorf("%d database reads on an ended context", n)
	}
}

// staticCatalog serves a fixed catalogue.
type staticCatalog []catalog.Product

func (s staticCatalog) All(ctx context.Context) ([]catalog.Product, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// TestCatalogCacheValueNoDatabaseHoldsIsReloaded: a cached catalogue that
// decodes but is no catalogue the products table could hold (a price not
// above zero, a product without a SKU or a currency, a SKU twice) is
// unreadable: read again from the database and rewritten. It was served, and
// priced orders: at 0 cents an order was free, a SKU twice was priced at its
// last copy, an order without a currency was made in none, and a negative
// price answered every order holding it 422 as an overflowing total.
func TestCatalogCacheValueNoDatabaseHoldsIsReloaded(t *testing.T) {
	ctx := context.Background()
	rdb := testRedis(t)
	db := stores(t)["postgres"]
	for name, value := range map[string]string{
		"negative price": `[{"sku":"INK-SET","name":"Ink","price_cents":-3500,"currency":"EUR"}]`,
		"zero price":     `[{"sku":"INK-SET","name":"Ink","price_cents":0,"currency":"EUR"}]`,
		"no price":       `[{"sku":"INK-SET","name":"Ink","currency":"EUR"}]`,
		"no sku":         `[{"sku":"","name":"Ink","price_cents":3500,"currency":"EUR"}]`,
		"no currency":    `[{"sku":"INK-SET","name":"Ink","price_cents":3500,"currency":""}]`,
		"no name":        `[{"sku":"INK-SET","name":"","price_cents":3500,"currency":"EUR"}]`,
		"null product":   `[null]`,
		"sku twice": `[{"sku":"INK-SET","name":"Ink","price_cents":3500,"currency":"EUR"},` +
			`{"sku":"INK-SET","name":"Ink","price_cents":1,"currency":"EUR"}]`,
	} {
		t.Run(name, func(t *testing.T) {
			key := "test:order:catalog:" + uuid.NewString()
			t.Cleanup(func() { rdb.Del(context.Background(), key) })
			src := &countingCatalog{next: adapters.NewCatalogGorm(db)}
			before := counted(t, "shanhai.order.catalog.refused", "source", "cache")
			cache := adapters.NewCatalogRedis(src, rdb, time.Minute, nil).WithKey(key)
			if err := rdb.Set(ctx, key, value, time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			ps, err := cache.All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != 8 || catalog.Index(ps)["INK-SET"].PriceCents != 3500 || src.reads.Load() != 1 {
				t.Fatalf("served %+v after %d database reads; want the seeded catalogue, read once", ps, src.reads.Load())
			}
			if got := rdb.Get(ctx, key).Val(); got == value {
				t.Fatalf("the cached value was left: %s", got)
			}
			if n := counted(t, "shanhai.order.catalog.refused", "source", "cache") - before; n != 1 {
				t.Errorf("shanhai.order.catalog.refused{source=cache} rose by %d; want 1", n)
			}
		})
	}
}

// TestCatalogTheDatabaseHoldsButCheckRefusesIsNotCached: a products table
// without migration 0005's CHECKs (dropped by hand) holds an empty currency
// that catalog.Check refuses. Such a
// catalogue, read from the database, is served but not written to Redis,
// and the log names the table. It was written: every later read refused it
// as "catalog cache holds unreadable value", read the database and wrote it
// again, a warning blaming the cache at each reload for what the table holds.
func TestCatalogTheDatabaseHoldsButCheckRefusesIsNotCached(t *testing.T) {
	ctx := context.Background()
	rdb := testRedis(t)
	db := stores(t)["postgres"]
	// Migration 0005 makes the table refuse such a row; a database whose
	// operator dropped the constraint is the one way left to hold it.
	if err := db.Exec(`ALTER TABLE products DROP CONSTRAINT products_currency_check`).Error; err != nil {
		t.Fatal(err)
	}
	if err := db.Exec(`INSERT INTO products (sku, name, price_cents, currency) VALUES ('FAN-PAPER', 'Paper fan', 500, '')`).Error; err != nil {
		t.Fatal(err)
	}
	key := "test:order:catalog:" + uuid.NewString()
	t.Cleanup(func() { rdb.Del(context.Background(), key) })
	logs := &testenv.LogBuffer{}
	cache := adapters.NewCatalogRedis(adapters.NewCatalogGorm(db), rdb, time.Minute, slog.New(slog.NewJSONHandler(logs, nil))).WithKey(key)
	before := counted(t, "shanhai.order.catalog.refused", "source", "database")
	for range 2 {
		ps, err := cache.All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 9 || catalog.Index(ps)["FAN-PAPER"].PriceCents != 500 {
			t.Fatalf("served %+v; want the database's catalogue", ps)
		}
	}
	if n := rdb.Exists(ctx, key).Val(); n != 0 {
		t.Errorf("a catalogue catalog.Check refuses was cached: %s", rdb.Get(ctx, key).Val())
	}
	s := logs.String()
	if strings.Contains(s, "catalog cache holds unreadable value") || !strings.Contains(s, "products table") {
		t.Errorf("want the products table named, not the cache blamed:\n%s", s)
	}
	if n := counted(t, "shanhai.order.catalog.refused", "source", "database") - before; n != 2 {
		t.Errorf("shanhai.order.catalog.refused{source=database} rose by %d; want 2, one a read", n)
	}
}
