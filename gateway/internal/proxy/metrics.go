package proxy

import (
	"context"
	"strconv"
	"sync"
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
type metrics struct {
	server   metric.Float64Histogram // http.server.request.duration
	client   metric.Float64Histogram // http.client.request.duration, per upstream
	limits   metric.Int64Counter
	retries  metric.Int64Counter
	mu       sync.RWMutex
	sets     map[setKey][]metric.RecordOption
	limitSet map[[2]string][]metric.AddOption
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
	out := &metrics{sets: map[setKey][]metric.RecordOption{}, limitSet: map[[2]string][]metric.AddOption{}}
	out.server, _ = m.Float64Histogram("http.server.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Gateway request duration by route, method and status"), buckets)
	out.client, _ = m.Float64Histogram("http.client.request.duration", metric.WithUnit("s"),
		metric.WithDescription("Upstream call duration by upstream service and status (0: no response)"), buckets)
	out.limits, _ = m.Int64Counter("shanhai.gateway.limit.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Rate limit and load-shedding decisions by limit and outcome"))
	out.retries, _ = m.Int64Counter("shanhai.gateway.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Upstream retries by upstream service and outcome (sent, denied_by_budget)"))
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

func (m *metrics) pair(a, b string) []metric.AddOption {
	k := [2]string{a, b}
	m.mu.RLock()
	o, ok := m.limitSet[k]
	m.mu.RUnlock()
	if ok {
		return o
	}
	o = []metric.AddOption{metric.WithAttributeSet(attribute.NewSet(attribute.String("limit", a), attribute.String("decision", b)))}
	m.mu.Lock()
	m.limitSet[k] = o
	m.mu.Unlock()
	return o
}

// decision counts a limiter outcome (limit "ip", "login", "user",
// "concurrency:<svc>", "breaker:<svc>"; decision "allow" or "deny").
func (m *metrics) decision(ctx context.Context, limit string, allowed bool) {
	d := "deny"
	if allowed {
		d = "allow"
	}
	m.limits.Add(ctx, 1, m.pair(limit, d)...)
}

func (m *metrics) retry(ctx context.Context, svc, outcome string) {
	m.retries.Add(ctx, 1, m.pair(svc, outcome)...)
}
