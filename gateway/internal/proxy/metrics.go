package proxy

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

const instrumentation = "github.com/shanhai-dev/shanhai/gateway/internal/proxy"

// metrics are the gateway's RED metrics and limiter decisions. Attribute
// sets are built once per (route, method, status) and kept as ready option
// slices: building them per request allocates and hashes every time, and even
// a prebuilt option passed variadically allocates its slice (both showed up
// in the allocation profile).
//
// The two counters (limit decisions, retries) are plain atomics read by an
// observable counter at collection time: two synchronous Adds per request
// (ip and user limits) cost about 2% of the gateway's CPU in the SDK's
// attribute resolution and exemplar filter, an atomic add costs nothing
// measurable. They export exactly as counters would.
type metrics struct {
	server metric.Float64Histogram // http.server.request.duration
	client metric.Float64Histogram // http.client.request.duration, per upstream
	mu     sync.RWMutex
	sets   map[setKey][]metric.RecordOption
	counts map[countKey]*count
}

// countKey names one counter series: decisions (limit, decision) or
// retries (upstream, outcome).
type countKey struct {
	retries bool
	a, b    string
}

type count struct {
	n   atomic.Int64
	set attribute.Set
}

type setKey struct {
	kind   uint8 // 0 server, 1 client
	name   string
	method uint8
	status int
}

var methods = [...]string{"_OTHER", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

func methodIndex(m []byte) uint8 {
	for i := 1; i < len(methods); i++ {
		if string(m) == methods[i] {
			return uint8(i)
		}
	}
	return 0
}

func newMetrics() *metrics {
	m := otel.Meter(instrumentation)
	buckets := metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
	out := &metrics{sets: map[setKey][]metric.RecordOption{}, counts: map[countKey]*count{}}
	out.server, _ = m.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Gateway request duration by route, method and status"), buckets)
	out.client, _ = m.Float64Histogram("http.client.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Upstream call duration by upstream service and status (0: no response)"), buckets)
	_, _ = m.Int64ObservableCounter("shanhai.gateway.limit.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Rate limit and load-shedding decisions by limit and outcome"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error { out.observe(o, false); return nil }))
	_, _ = m.Int64ObservableCounter("shanhai.gateway.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Upstream retries by upstream service and outcome (sent, denied_by_budget)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error { out.observe(o, true); return nil }))
	return out
}

func (m *metrics) set(k setKey) []metric.RecordOption {
	m.mu.RLock()
	o, ok := m.sets[k]
	m.mu.RUnlock()
	if ok {
		return o
	}
	var attrs []attribute.KeyValue
	if k.kind == 0 {
		attrs = []attribute.KeyValue{attribute.String("http.route", k.name)}
	} else {
		attrs = []attribute.KeyValue{attribute.String("shanhai.upstream", k.name)}
	}
	attrs = append(attrs, attribute.String("http.request.method", methods[k.method]),
		attribute.String("http.response.status_code", strconv.Itoa(k.status)))
	o = []metric.RecordOption{metric.WithAttributeSet(attribute.NewSet(attrs...))}
	m.mu.Lock()
	m.sets[k] = o
	m.mu.Unlock()
	return o
}

func (m *metrics) request(ctx context.Context, route string, method uint8, status int, d time.Duration) {
	m.server.Record(ctx, d.Seconds(), m.set(setKey{kind: 0, name: route, method: method, status: status})...)
}

func (m *metrics) upstream(ctx context.Context, svc string, method uint8, status int, d time.Duration) {
	m.client.Record(ctx, d.Seconds(), m.set(setKey{kind: 1, name: svc, method: method, status: status})...)
}

// counter returns the series for k, creating it on first use.
func (m *metrics) counter(k countKey) *count {
	m.mu.RLock()
	c, ok := m.counts[k]
	m.mu.RUnlock()
	if ok {
		return c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c = m.counts[k]; c != nil {
		return c
	}
	c = &count{}
	if k.retries {
		c.set = attribute.NewSet(attribute.String("shanhai.upstream", k.a), attribute.String("outcome", k.b))
	} else {
		c.set = attribute.NewSet(attribute.String("limit", k.a), attribute.String("decision", k.b))
	}
	m.counts[k] = c
	return c
}

// observe reports the current totals of one counter family.
func (m *metrics) observe(o metric.Int64Observer, retries bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, c := range m.counts {
		if k.retries == retries {
			o.Observe(c.n.Load(), metric.WithAttributeSet(c.set))
		}
	}
}

// decision counts a limiter outcome (limit "ip", "login", "user",
// "concurrency:<svc>", "breaker:<svc>"; decision "allow" or "deny").
func (m *metrics) decision(limit string, allowed bool) {
	d := "deny"
	if allowed {
		d = "allow"
	}
	m.counter(countKey{a: limit, b: d}).n.Add(1)
}

func (m *metrics) retry(svc, outcome string) {
	m.counter(countKey{retries: true, a: svc, b: outcome}).n.Add(1)
}
