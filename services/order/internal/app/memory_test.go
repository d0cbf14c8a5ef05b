package app_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/shanhai-dev/shanhai/services/order/internal/domain/catalog"
	"github.com/shanhai-dev/shanhai/services/order/internal/domain/order"
)

// memoryOrders is a unit-test fake of order.Repository. The real
// repositories are tested against PostgreSQL and SQLite in adapters.
type memoryOrders struct {
	mu        sync.Mutex
	orders    map[string]order.Snapshot
	replays   map[[2]string]order.Replay
	processed map[[2]string]bool
	events    []order.Event
	ids       []string // creation order

	expireCalls int
}

func newMemoryOrders() *memoryOrders {
	return &memoryOrders{orders: map[string]order.Snapshot{}, replays: map[[2]string]order.Replay{}, processed: map[[2]string]bool{}}
}

func (m *memoryOrders) Create(_ context.Context, o *order.Order, r order.Replay) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{r.UserID, r.Key}
	if _, ok := m.replays[k]; ok {
		return order.ErrDuplicateKey
	}
	m.replays[k] = r
	m.orders[o.ID()] = o.Snapshot()
	m.ids = append(m.ids, o.ID())
	m.events = append(m.events, o.Events()...)
	return nil
}

func (m *memoryOrders) FindReplay(_ context.Context, userID, key string) (order.Replay, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.replays[[2]string{userID, key}]
	if !ok {
		return order.Replay{}, order.ErrNotFound
	}
	return r, nil
}

func (m *memoryOrders) Get(_ context.Context, userID, id string) (*order.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.orders[id]
	if !ok || s.UserID != userID {
		return nil, order.ErrNotFound
	}
	return order.FromSnapshot(s), nil
}

func (m *memoryOrders) List(_ context.Context, userID string, q order.ListQuery) ([]*order.Order, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*order.Order
	ids := slices.Clone(m.ids)
	slices.Reverse(ids)
	started := q.Cursor == ""
	for _, id := range ids {
		if !started {
			started = id == q.Cursor
			continue
		}
		s := m.orders[id]
		if s.UserID != userID || (q.Status != "" && s.Status != q.Status) {
			continue
		}
		if len(out) == q.Limit {
			return out, out[len(out)-1].ID(), nil
		}
		out = append(out, order.FromSnapshot(s))
	}
	return out, "", nil
}

func (m *memoryOrders) Update(_ context.Context, userID, id string, fn func(*order.Order) error) (*order.Order, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.orders[id]
	if !ok || s.UserID != userID {
		return nil, order.ErrNotFound
	}
	o := order.FromSnapshot(s)
	if err := fn(o); err != nil {
		return nil, err
	}
	m.orders[id] = o.Snapshot()
	m.events = append(m.events, o.Events()...)
	return o, nil
}

func (m *memoryOrders) ApplyOnce(_ context.Context, consumer, eventID, orderID string, fn func(*order.Order) error) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [2]string{consumer, eventID}
	if m.processed[k] {
		return false, nil
	}
	s, ok := m.orders[orderID]
	if !ok {
		return false, order.ErrNotFound
	}
	o := order.FromSnapshot(s)
	if err := fn(o); err != nil {
		return false, err
	}
	m.processed[k] = true
	m.orders[orderID] = o.Snapshot()
	return true, nil
}

type staticCatalog []catalog.Product

func (c staticCatalog) All(context.Context) ([]catalog.Product, error) { return c, nil }

// ExpirePending takes the oldest PENDING orders placed before cutoff, at
// most limit, and counts each call's limit in calls.
func (m *memoryOrders) ExpirePending(_ context.Context, cutoff time.Time, limit int, fn func(*order.Order) error) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireCalls++
	changed := map[string]order.Snapshot{}
	var events []order.Event
	for _, id := range m.ids { // creation order
		s := m.orders[id]
		if len(changed) == limit || s.Status != order.Pending || !s.CreatedAt.Before(cutoff) {
			continue
		}
		o := order.FromSnapshot(s)
		if err := fn(o); err != nil {
			return 0, err
		}
		if o.Status() != order.Pending {
			changed[id] = o.Snapshot()
			events = append(events, o.Events()...)
		}
	}
	maps.Copy(m.orders, changed)
	m.events = append(m.events, events...)
	return len(changed), nil
}
