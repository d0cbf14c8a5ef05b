package proxy

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

const instrumentation = "github.com/shanhai-dev/shanhai/gateway/internal/proxy"

// metrics are the gateway's RED metrics and limiter decisions.
//
// The two duration histograms are client_golang histograms, one
// pre-resolved series per (route or upstream, method, status), registered
// with the registry of telemetry.Setup (which serves /metrics), not OTel
// instruments: an OTel SDK Record resolves and deduplicates the attribute
// set, looks the series up by it, asks the exemplar filter and takes the
// histogram point's lock; a client_golang series is a few atomic adds
// (BenchmarkRecord, a request's two observations: about 750 ns through the
// SDK with its Prometheus reader, 260-300 ns here, at load 12). The exposition
// keeps the names, labels and buckets the OTel Prometheus exporter printed
// (without its otel_scope_* labels), so dashboards cannot tell; the cost,
// as for pkg/telemetry's gin middleware, is that these two are scraped, not
// pushed over OTLP. Observations go through telemetry.DurationSeries, the
// middleware's too: a sampled request's trace becomes an exemplar at most
// once a second per bucket.
//
// The two counters (limit decisions, retries) are plain atomics read by an
// observable counter at collection time: two synchronous Adds per request
// (ip and user limits) cost about 2% of the gateway's CPU in the SDK's
// attribute resolution and exemplar filter, an atomic add costs nothing
// measurable. They export exactly as counters would.
type metrics struct {
	family [2]*telemetry.Histograms // by setKey.kind
	mu     sync.RWMutex
	names  [2]atomic.Pointer[map[string]*nameSeries] // by setKey.kind, then name; copied on write under mu
	counts map[countKey]*count
	// limits are the ip, login and user decision counters, by limitKind
	// and then deny/allow, resolved on first use: every request counts two
	// decisions, and a lookup by name (a read lock and a map keyed by two
	// strings) cost more than the count.
	limits [len(limitNames)][2]atomic.Pointer[count]
}

// limitKind is one of the limits every request meets (limitNames).
type limitKind uint8

const (
	limitIP limitKind = iota
	limitLogin
	limitUser
)

var (
	limitNames    = [...]string{"ip", "login", "user"}
	decisionNames = [2]string{"deny", "allow"}
)

// countKey names one counter series: decisions (limit, decision),
// retries (upstream, outcome) or ejections (upstream, b empty).
type countKey struct {
	retries, ejections bool
	a, b               string
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

// durationBuckets are finer than the semantic conventions' advice at the
// low end: the gateway's own latency is well under 5 ms.
var durationBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Help texts are those of pkg/telemetry's middleware for the same names:
// in a process hosting services beside the gateway (cmd/shanhai) both
// families go to one registry, which refuses two help texts for one name.
var histogramHelp = [2]struct{ name, help, label string }{
	{"http_server_request_duration_seconds", "Duration of HTTP server requests.", "http_route"},
	{"http_client_request_duration_seconds", "Duration of HTTP client requests.", "shanhai_upstream"},
}

func newMetrics() *metrics {
	return newMetricsIn(telemetry.Registerer(), otel.GetMeterProvider())
}

// newMetricsIn registers the histograms on reg and the counters on mp's
// meter: a test passes its own provider rather than replacing the global
// one, whose delegate hands every instrument made before to the first
// provider set, so another test's counters would shadow the ones it reads.
func newMetricsIn(reg prometheus.Registerer, mp metric.MeterProvider) *metrics {
	m := mp.Meter(instrumentation)
	out := &metrics{counts: map[countKey]*count{}}
	for i, def := range histogramHelp {
		var err error
		if out.family[i], err = telemetry.HistogramsFor(reg, def.name); err != nil {
			// Only a checked collector of the same name gets here; the
			// gateway then serves without this metric.
			otel.Handle(fmt.Errorf("gateway: %w", err))
		}
	}
	for i := range out.names {
		out.names[i].Store(&map[string]*nameSeries{})
	}
	_, _ = m.Int64ObservableCounter("shanhai.gateway.limit.decisions", metric.WithUnit("{decision}"),
		metric.WithDescription("Rate limit and load-shedding decisions by limit and outcome"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error { out.observe(o, countKey{}); return nil }))
	_, _ = m.Int64ObservableCounter("shanhai.gateway.retries", metric.WithUnit("{retry}"),
		metric.WithDescription("Upstream retries by upstream service and outcome (sent, denied_by_budget)"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			out.observe(o, countKey{retries: true})
			return nil
		}))
	_, _ = m.Int64ObservableCounter("shanhai.gateway.upstream.ejections", metric.WithUnit("{ejection}"),
		metric.WithDescription("Instances taken out of picking after a refused connection, by upstream service"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			out.observe(o, countKey{ejections: true})
			return nil
		}))
	return out
}

// seriesOf finds k's series: by name in a copy-on-write map with string
// keys (no lock; the runtime's fast string path, where a struct key took
// the generic one, which hashed every field: half of an observation), then
// by method and status in arrays filled on first use.
func (m *metrics) seriesOf(k setKey) *telemetry.DurationSeries {
	n := (*m.names[k.kind].Load())[k.name]
	if n == nil {
		n = m.addName(k.kind, k.name)
	}
	var slot *atomic.Pointer[telemetry.DurationSeries]
	if k.status >= 100 && k.status < 600 {
		codes := n.byMethod[k.method].Load()
		if codes == nil {
			n.byMethod[k.method].CompareAndSwap(nil, new([500]atomic.Pointer[telemetry.DurationSeries]))
			codes = n.byMethod[k.method].Load()
		}
		slot = &codes[k.status-100]
		if s := slot.Load(); s != nil {
			return s
		}
	}
	if slot == nil {
		m.mu.Lock()
		defer m.mu.Unlock()
		if s := n.other[k]; s != nil {
			return s
		}
	}
	def := histogramHelp[k.kind]
	h := m.family[k.kind].Series(k, func() prometheus.HistogramOpts {
		return prometheus.HistogramOpts{
			Name: def.name, Help: def.help, Buckets: durationBuckets,
			ConstLabels: prometheus.Labels{
				def.label: k.name, "http_request_method": methods[k.method], "http_response_status_code": strconv.Itoa(k.status),
			},
		}
	})
	s := telemetry.NewDurationSeries(h, durationBuckets)
	if slot == nil {
		if n.other == nil {
			n.other = map[setKey]*telemetry.DurationSeries{}
		}
		n.other[k] = s
	} else if !slot.CompareAndSwap(nil, s) {
		s = slot.Load()
	}
	return s
}

// addName adds a name's series table: a new map, as readers hold the old
// one without a lock.
func (m *metrics) addName(kind uint8, name string) *nameSeries {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := *m.names[kind].Load()
	if n := old[name]; n != nil {
		return n
	}
	next := make(map[string]*nameSeries, len(old)+1)
	maps.Copy(next, old)
	n := &nameSeries{}
	next[name] = n
	m.names[kind].Store(&next)
	return n
}

// nameSeries are the series of one route (or upstream) by method, then by
// status 100-599; other statuses (0: no response) are in a map under the
// metrics' lock, which only failed upstream calls take.
type nameSeries struct {
	byMethod [len(methods)]atomic.Pointer[[500]atomic.Pointer[telemetry.DurationSeries]]
	other    map[setKey]*telemetry.DurationSeries
}

func (m *metrics) request(ctx context.Context, route string, method uint8, status int, d time.Duration) {
	m.seriesOf(setKey{kind: 0, name: route, method: method, status: status}).Observe(d.Seconds(), trace.SpanContextFromContext(ctx))
}

func (m *metrics) upstream(ctx context.Context, svc string, method uint8, status int, d time.Duration) {
	m.seriesOf(setKey{kind: 1, name: svc, method: method, status: status}).Observe(d.Seconds(), trace.SpanContextFromContext(ctx))
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
	switch {
	case k.ejections:
		c.set = attribute.NewSet(attribute.String("shanhai.upstream", k.a))
	case k.retries:
		c.set = attribute.NewSet(attribute.String("shanhai.upstream", k.a), attribute.String("outcome", k.b))
	default:
		c.set = attribute.NewSet(attribute.String("limit", k.a), attribute.String("decision", k.b))
	}
	m.counts[k] = c
	return c
}

// observe reports the current totals of one counter family, the one whose
// flags family has.
func (m *metrics) observe(o metric.Int64Observer, family countKey) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, c := range m.counts {
		if k.retries == family.retries && k.ejections == family.ejections {
			o.Observe(c.n.Load(), metric.WithAttributeSet(c.set))
		}
	}
}

// decision counts a limiter outcome (limit "ip", "login", "user",
// "concurrency:<svc>", "breaker:<svc>"; decision "allow" or "deny").
func (m *metrics) decision(limit string, allowed bool) {
	m.counter(countKey{a: limit, b: decisionNames[b2i(allowed)]}).n.Add(1)
}

// limitDecision is decision for the per-request limits, without a lookup.
func (m *metrics) limitDecision(k limitKind, allowed bool) {
	slot := &m.limits[k][b2i(allowed)]
	c := slot.Load()
	if c == nil {
		c = m.counter(countKey{a: limitNames[k], b: decisionNames[b2i(allowed)]})
		slot.Store(c)
	}
	c.n.Add(1)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) retry(svc, outcome string) {
	m.counter(countKey{retries: true, a: svc, b: outcome}).n.Add(1)
}

// ejection counts an instance of svc taken out of picking (upstream.Eject).
func (m *metrics) ejection(svc string) {
	m.counter(countKey{ejections: true, a: svc}).n.Add(1)
}

// Evicter is a limit that drops keys for new ones at its cap and counts
// them (quota.Lease satisfies it).
type Evicter interface {
	Evictions() int64
}

// ExportEvictions reports each limit's evicted keys as the observable
// counter shanhai.gateway.limit.evictions{limit}, beside the decisions, on
// mp's meter until the returned registration is unregistered. A limit at its
// cap (a flood of IPv6 /64s, say) was only logged once a minute; as a
// counter it can be graphed and alerted on. It is read at collection time
// from the limit's own atomic, so a request pays nothing for it. Unregister
// it when the limits go, as Run does on return: otherwise a process that
// lives on (tests, cmd/shanhai) keeps reporting, and holding, every Run's
// limits.
func ExportEvictions(mp metric.MeterProvider, limits map[string]Evicter) (metric.Registration, error) {
	m := mp.Meter(instrumentation)
	c, err := m.Int64ObservableCounter("shanhai.gateway.limit.evictions", metric.WithUnit("{key}"),
		metric.WithDescription("Keys a rate limit at its cap dropped for new ones, by limit"))
	if err != nil {
		return nil, fmt.Errorf("gateway: limit evictions counter: %w", err)
	}
	type series struct {
		l   Evicter
		opt metric.ObserveOption
	}
	all := make([]series, 0, len(limits))
	for name, l := range limits {
		if l != nil {
			all = append(all, series{l, metric.WithAttributeSet(attribute.NewSet(attribute.String("limit", name)))})
		}
	}
	reg, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range all {
			o.ObserveInt64(c, s.l.Evictions(), s.opt)
		}
		return nil
	}, c)
	if err != nil {
		return nil, fmt.Errorf("gateway: limit evictions callback: %w", err)
	}
	return reg, nil
}
