package adapters

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
)

// CatalogMemoTTL is how long a process keeps its own copy of the catalogue.
const CatalogMemoTTL = 2 * time.Second

// CatalogMemo keeps the last catalogue read in process memory for a short
// time, in front of the Redis cache. Every order and every browse reads the
// whole catalogue; under load that was a Redis round trip plus a JSON decode
// per request for data that only a migration changes. The TTL is short so
// that replicas still converge on a reseeded catalogue within seconds, and
// Redis stays the shared cache that spares the database when many replicas
// start at once.
type CatalogMemo struct {
	next catalog.Repository
	ttl  time.Duration
	now  func() time.Time

	// mu (a one-slot semaphore) is held across a reload: concurrent callers
	// that find the copy stale wait for one reload instead of all asking
	// Redis at once. It is a channel rather than a sync.Mutex so that a
	// waiter gives up when its own context ends: the reload runs on the
	// first caller's context, and with the products table locked or the
	// database unreachable a mutex held every later request past its
	// deadline, queued behind reloads it had no part in.
	mu       chan struct{}
	products []catalog.Product
	loaded   time.Time
}

// NewCatalogMemo wraps next with a copy kept for ttl.
func NewCatalogMemo(next catalog.Repository, ttl time.Duration) *CatalogMemo {
	return &CatalogMemo{next: next, ttl: ttl, now: time.Now, mu: make(chan struct{}, 1)}
}

// lock takes mu, or gives up with ctx's error once ctx ends. A free mu is
// taken even when ctx has ended, so a fresh copy is still served.
func (c *CatalogMemo) lock(ctx context.Context) error {
	select {
	case c.mu <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.mu <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("catalogue: wait for another reload: %w", ctx.Err())
	}
}

func (c *CatalogMemo) unlock() { <-c.mu }

// All returns the catalogue; the caller owns the returned slice.
func (c *CatalogMemo) All(ctx context.Context) ([]catalog.Product, error) {
	if err := c.lock(ctx); err != nil {
		return nil, err
	}
	defer c.unlock()
	if c.products != nil && c.now().Sub(c.loaded) < c.ttl {
		return slices.Clone(c.products), nil
	}
	ps, err := c.next.All(ctx)
	if err != nil {
		return nil, err
	}
	// An empty catalogue is not kept: the seed may be about to land.
	if len(ps) > 0 {
		c.products, c.loaded = slices.Clone(ps), c.now()
	}
	return ps, nil
}

// Forget drops the copy, so the next read goes to the wrapped repository.
func (c *CatalogMemo) Forget() {
	c.mu <- struct{}{}
	c.products = nil
	c.unlock()
}
