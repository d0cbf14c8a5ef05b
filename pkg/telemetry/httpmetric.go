package telemetry

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// The request-duration histogram is a client_golang histogram, not an OTel
// instrument, for speed: an OTel SDK Record hashes the attribute set and
// takes a lock on every call, while a pre-resolved client_golang series is a
// few atomic adds (BenchmarkDurationRecord compares them). Its exposition is
// what the OTel Prometheus exporter would print for
// http.server.request.duration (same name and unit suffix, the same labels
// with dots as underscores, the advised buckets), so dashboards cannot tell;
// the cost is that this one metric is scraped, not pushed over OTLP. Every
// other metric goes through otel.Meter as usual.

// durationBuckets are the boundaries the HTTP semantic conventions advise.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10}

// exemplarEvery limits exemplars to one per bucket and series per interval.
// Building one allocates a dozen objects; Prometheus keeps only the latest
// per bucket and scrapes every 15 s or so, so more would be thrown away.
const exemplarEvery = time.Second

// durations is the histogram family (see Histograms): one series per label
// combination, each with only the labels that apply (http.route is absent
// for unmatched requests and error.type for non-5xx, as the conventions
// say), which a HistogramVec cannot do: it prints empty labels instead.
type durations struct {
	family *Histograms
	mu     sync.Mutex
	byKey  map[seriesKey]*DurationSeries
}

type seriesKey struct {
	method, route string
	status        int
}

func durationsFor(reg prometheus.Registerer) *durations {
	f, err := HistogramsFor(reg, "http_server_request_duration_seconds")
	if err != nil {
		panic(err.Error())
	}
	return &durations{family: f, byKey: map[seriesKey]*DurationSeries{}}
}

// seriesFor returns the one series of a label combination, creating it on
// first use; callers cache the result, so the lock is taken once per series.
func (d *durations) seriesFor(method, route string, status int) *DurationSeries {
	d.mu.Lock()
	defer d.mu.Unlock()
	k := seriesKey{method, route, status}
	if s, ok := d.byKey[k]; ok {
		return s
	}
	h := d.family.Series(k, func() prometheus.HistogramOpts {
		code := strconv.Itoa(status)
		labels := prometheus.Labels{"http_request_method": method, "http_response_status_code": code}
		if route != "" {
			labels["http_route"] = route
		}
		if status >= 500 {
			labels["error_type"] = code
		}
		return prometheus.HistogramOpts{
			Name:        "http_server_request_duration_seconds",
			Help:        "Duration of HTTP server requests.",
			Buckets:     durationBuckets,
			ConstLabels: labels,
		}
	})
	s := NewDurationSeries(h, durationBuckets)
	d.byKey[k] = s
	return s
}

// DurationSeries is one resolved histogram series (of a Histograms family)
// that attaches a sampled request's trace as an exemplar, at most one per
// bucket every exemplarEvery: building an exemplar allocates a dozen
// objects, and Prometheus keeps only the latest per bucket anyway.
// Middleware and the gateway's duration histograms observe through it.
type DurationSeries struct {
	hist     prometheus.Observer
	ex       prometheus.ExemplarObserver
	buckets  []float64
	lastExem [16]atomic.Int64 // monotonic() of the last exemplar per bucket (the last slot shared by any beyond); 0 for none yet
}

// NewDurationSeries wraps h, a histogram with the given bucket boundaries.
func NewDurationSeries(h prometheus.Histogram, buckets []float64) *DurationSeries {
	s := &DurationSeries{hist: h, buckets: buckets}
	s.ex, _ = h.(prometheus.ExemplarObserver)
	return s
}

// Observe records one duration; sc's trace becomes an exemplar when it is
// sampled and its bucket had none for exemplarEvery. The clock is read only
// then.
func (s *DurationSeries) Observe(seconds float64, sc trace.SpanContext) {
	if s.ex == nil || !sc.IsSampled() {
		s.hist.Observe(seconds)
		return
	}
	slot := &s.lastExem[min(sort.SearchFloat64s(s.buckets, seconds), len(s.lastExem)-1)]
	last := slot.Load()
	n := max(monotonic(), 1) // 0 means "none yet"
	if (last != 0 && n-last < int64(exemplarEvery)) || !slot.CompareAndSwap(last, n) {
		s.hist.Observe(seconds)
		return
	}
	s.ex.ObserveWithExemplar(seconds, prometheus.Labels{
		"trace_id": sc.TraceID().String(),
		"span_id":  sc.SpanID().String(),
	})
}

// statusSeries finds the series of one route and method by status code
// without hashing: codes 100-599 index an array, anything else (a handler
// may set any integer) goes to a map.
type statusSeries struct {
	codes [500]atomic.Pointer[DurationSeries]
	mu    sync.Mutex
	other map[int]*DurationSeries
}

func (ss *statusSeries) get(status int, mk func() *DurationSeries) *DurationSeries {
	if status >= 100 && status < 600 {
		p := &ss.codes[status-100]
		if s := p.Load(); s != nil {
			return s
		}
		s := mk()
		if p.CompareAndSwap(nil, s) {
			return s
		}
		return p.Load()
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.other == nil {
		ss.other = map[int]*DurationSeries{}
	}
	s, ok := ss.other[status]
	if !ok {
		s = mk()
		ss.other[status] = s
	}
	return s
}
