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
	byKey  map[seriesKey]*series
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
	return &durations{family: f, byKey: map[seriesKey]*series{}}
}

// seriesFor returns the one series of a label combination, creating it on
// first use; callers cache the result, so the lock is taken once per series.
func (d *durations) seriesFor(method, route string, status int) *series {
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
	s := &series{hist: h}
	s.ex, _ = h.(prometheus.ExemplarObserver)
	d.byKey[k] = s
	return s
}

// series is one label combination, resolved once.
type series struct {
	hist     prometheus.Observer
	ex       prometheus.ExemplarObserver
	lastExem [16]atomic.Int64 // monotonic() of the last exemplar per bucket (14 + +Inf); 0 for none yet
}

// observe records one duration; now is a monotonic() reading, used only to
// space the exemplars.
func (s *series) observe(seconds float64, sc trace.SpanContext, now int64) {
	if s.ex == nil || !sc.IsSampled() {
		s.hist.Observe(seconds)
		return
	}
	b := sort.SearchFloat64s(durationBuckets, seconds)
	last := s.lastExem[b].Load()
	n := max(now, 1) // 0 means "none yet"
	if (last != 0 && n-last < int64(exemplarEvery)) || !s.lastExem[b].CompareAndSwap(last, n) {
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
	codes [500]atomic.Pointer[series]
	mu    sync.Mutex
	other map[int]*series
}

func (ss *statusSeries) get(status int, mk func() *series) *series {
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
		ss.other = map[int]*series{}
	}
	s, ok := ss.other[status]
	if !ok {
		s = mk()
		ss.other[status] = s
	}
	return s
}
