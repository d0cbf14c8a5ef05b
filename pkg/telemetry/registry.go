package telemetry

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Registerer is the registry of the last Setup, which its Provider's
// MetricsHandler serves (Prometheus's default registry before any Setup).
// Instruments that bypass the OTel SDK for speed register there, as
// Middleware's request-duration histogram does, so they appear on the same
// /metrics page as the SDK's.
func Registerer() prometheus.Registerer { return defaultRegisterer() }

// Histograms is a family of client_golang histogram series made one at a
// time, each with constant labels of its own, for hot paths that resolve a
// series once and then only observe (a few atomic adds, where an OTel SDK
// Record hashes and deduplicates its attribute set every time). Unlike a
// HistogramVec, its series may differ in label names (the conventions leave
// http.route off unmatched requests), which is also why it is an
// "unchecked" collector: Describe sends nothing.
type Histograms struct {
	mu     sync.Mutex
	series []prometheus.Histogram
	byKey  map[any]prometheus.Histogram
}

type familyKey struct {
	reg  prometheus.Registerer
	name string
}

var families sync.Map // familyKey -> *Histograms

// HistogramsFor returns reg's family called name, registering it on first
// use. Every user of one registry shares it (Middleware and the gateway in
// one process, several middlewares, tests): two collectors would report a
// series twice. The error is the registry's refusal; the family then works
// but is not exported.
func HistogramsFor(reg prometheus.Registerer, name string) (*Histograms, error) {
	k := familyKey{reg, name}
	if h, ok := families.Load(k); ok {
		return h.(*Histograms), nil
	}
	h := &Histograms{byKey: map[any]prometheus.Histogram{}}
	if actual, loaded := families.LoadOrStore(k, h); loaded {
		return actual.(*Histograms), nil
	}
	if err := reg.Register(h); err != nil {
		return h, fmt.Errorf("telemetry: register %s: %w", name, err)
	}
	return h, nil
}

// Series returns the series of key (comparable, unique among the family's
// users: give each user a key type of its own), made with opts on first
// use. It takes a lock: callers keep the series.
func (h *Histograms) Series(key any, opts func() prometheus.HistogramOpts) prometheus.Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.byKey[key]; ok {
		return s
	}
	s := prometheus.NewHistogram(opts())
	// Collect reads the slice without the lock held: never append in place.
	h.series = append(h.series[:len(h.series):len(h.series)], s)
	h.byKey[key] = s
	return s
}

// Describe sends nothing, which makes this an unchecked collector.
func (h *Histograms) Describe(chan<- *prometheus.Desc) {}

// Collect sends every series.
func (h *Histograms) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	hs := h.series
	h.mu.Unlock()
	for _, s := range hs {
		s.Collect(ch)
	}
}
