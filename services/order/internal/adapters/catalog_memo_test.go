package adapters

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
)

// countingCatalog is a fake upstream that counts reads and serves whatever
// it is told to.
type countingCatalog struct {
	reads    int
	products []catalog.Product
	err      error
}

func (c *countingCatalog) All(context.Context) ([]catalog.Product, error) {
	c.reads++
	return c.products, c.err
}

func TestCatalogMemoKeepsACopyForTTL(t *testing.T) {
	ctx := context.Background()
	up := &countingCatalog{products: []catalog.Product{{SKU: "TEA", Name: "Tea", PriceCents: 100, Currency: "EUR"}}}
	clock := time.Unix(1000, 0)
	m := NewCatalogMemo(up, 2*time.Second)
	m.now = func() time.Time { return clock }

	read := func() []catalog.Product {
		t.Helper()
		ps, err := m.All(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ps
	}
	first := read()
	first[0].PriceCents = 1 // the caller owns its slice: this must not leak into the copy
	clock = clock.Add(1999 * time.Millisecond)
	if ps := read(); up.reads != 1 || ps[0].PriceCents != 100 {
		t.Fatalf("within TTL: %d upstream reads, price %d; want 1 read and the stored 100", up.reads, ps[0].PriceCents)
	}

	up.products = []catalog.Product{{SKU: "TEA", Name: "Tea", PriceCents: 200, Currency: "EUR"}}
	clock = clock.Add(time.Millisecond)
	if ps := read(); up.reads != 2 || ps[0].PriceCents != 200 {
		t.Fatalf("at TTL: %d upstream reads, price %d; want a reload with 200", up.reads, ps[0].PriceCents)
	}

	m.Forget()
	read()
	if up.reads != 3 {
		t.Fatalf("after Forget: %d upstream reads, want 3", up.reads)
	}
}

func TestCatalogMemoDoesNotKeepFailuresOrEmptyCatalogues(t *testing.T) {
	ctx := context.Background()
	up := &countingCatalog{err: errors.New("redis and database down")}
	m := NewCatalogMemo(up, time.Hour)
	if _, err := m.All(ctx); err == nil {
		t.Fatal("upstream error was swallowed")
	}
	up.err = nil // empty, as before the seed migration
	if ps, _ := m.All(ctx); len(ps) != 0 {
		t.Fatalf("got %v from an empty upstream", ps)
	}
	up.products = []catalog.Product{{SKU: "CUP"}}
	if ps, _ := m.All(ctx); len(ps) != 1 || up.reads != 3 {
		t.Fatalf("got %v after %d reads; failures and empty answers must not be kept", ps, up.reads)
	}
}

// blockingCatalog is an upstream whose reads wait until release is closed or
// their own context ends, like a products table held by a migration's lock.
type blockingCatalog struct {
	started chan struct{}
	release chan struct{}
}

func (c *blockingCatalog) All(ctx context.Context) ([]catalog.Product, error) {
	c.started <- struct{}{}
	select {
	case <-c.release:
		return []catalog.Product{{SKU: "TEA", Name: "Tea", PriceCents: 100, Currency: "EUR"}}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestCatalogMemoWaiterKeepsItsOwnDeadline: a caller that finds another's
// reload in progress waits for it only as long as its own context allows.
// Waiting on a plain mutex held it until the other reload ended, whatever its
// own deadline: with the products table locked (a migration) or the database
// unreachable, every order request queued behind the first one's reload, each
// past its deadline.
func TestCatalogMemoWaiterKeepsItsOwnDeadline(t *testing.T) {
	up := &blockingCatalog{started: make(chan struct{}, 1), release: make(chan struct{})}
	m := NewCatalogMemo(up, time.Hour)

	first := make(chan error, 1)
	go func() {
		_, err := m.All(context.Background()) // no deadline: the reload waits for the upstream
		first <- err
	}()
	<-up.started

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the second caller's deadline has passed
	waiter := make(chan error, 1)
	go func() {
		_, err := m.All(ctx)
		waiter <- err
	}()
	select {
	case err := <-waiter:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("waiter: err = %v, want its own context's error", err)
		}
	case <-first:
		t.Fatal("the first reload ended before the upstream was released")
	case <-up.started:
		t.Fatal("the waiter started a second reload while the first was in progress")
	case <-time.After(10 * time.Second):
		close(up.release)
		<-first
		<-waiter
		t.Fatal("a caller whose context had ended waited for another caller's reload")
	}
	close(up.release)
	if err := <-first; err != nil {
		t.Fatalf("first reload: %v", err)
	}
	// The reload done, the copy serves even a caller whose context ended:
	// nothing needs to wait.
	if ps, err := m.All(ctx); err != nil || len(ps) != 1 {
		t.Fatalf("after the reload: %v, %v; want the stored copy", ps, err)
	}
}
