package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

// The decision and retry counters are atomics behind observable counters;
// what a collection reports must be the exact totals, per series, as
// monotonic sums, with retries labelled by upstream (the dashboard groups by
// shanhai_upstream).
func TestCountersExportTotals(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	m := newMetricsIn(prometheus.NewRegistry(), sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)))
	for range 5 {
		m.decision("ip", true)
	}
	m.decision("ip", false)
	m.decision("breaker:order", false)
	m.retry("order", "sent")
	m.retry("order", "sent")
	m.retry("order", "denied_by_budget")

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			sum, ok := mt.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			if !sum.IsMonotonic {
				t.Errorf("%s is not monotonic", mt.Name)
			}
			got[mt.Name] = map[string]int64{}
			for _, dp := range sum.DataPoints {
				got[mt.Name][dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Value
			}
		}
	}
	want := map[string]map[string]int64{
		"shanhai.gateway.limit.decisions": {
			"decision=allow,limit=ip": 5, "decision=deny,limit=ip": 1, "decision=deny,limit=breaker:order": 1,
		},
		"shanhai.gateway.retries": {
			"outcome=sent,shanhai.upstream=order": 2, "outcome=denied_by_budget,shanhai.upstream=order": 1,
		},
	}
	for name, series := range want {
		for k, v := range series {
			if got[name][k] != v {
				t.Errorf("%s{%s} = %d, want %d (all: %v)", name, k, got[name][k], v, got[name])
			}
		}
		if len(got[name]) != len(series) {
			t.Errorf("%s has series %v, want exactly %v", name, got[name], series)
		}
	}
}

// BenchmarkRecord is one request's two histogram observations (server and
// upstream) for an unsampled request, the common case.
func BenchmarkRecord(b *testing.B) {
	m := newMetrics()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		m.request(ctx, "orders", 1, 200, 1234*time.Microsecond)
		m.upstream(ctx, "order", 1, 200, 1100*time.Microsecond)
	}
}

// The duration histograms export under the names, labels and buckets the
// OTel Prometheus exporter gave them, with the trace of a sampled request as
// an exemplar (at most once a second per series); gateways sharing one
// registry share the series.
func TestHistogramsExport(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, again := newMetricsIn(reg, otel.GetMeterProvider()), newMetricsIn(reg, otel.GetMeterProvider())
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled})
	sampled := trace.ContextWithSpanContext(context.Background(), sc)
	m.request(sampled, "orders", 1, 200, 2*time.Millisecond)
	m.request(sampled, "orders", 1, 200, 2*time.Millisecond) // within the second: no exemplar
	again.request(context.Background(), "orders", 1, 200, 20*time.Millisecond)
	m.request(context.Background(), "orders", 3, 429, time.Millisecond)
	m.upstream(context.Background(), "order", 1, 0, time.Second)

	got := histograms(t, reg)
	want := map[string]uint64{
		"http_server_request_duration_seconds{http_request_method=GET,http_response_status_code=200,http_route=orders}":    3,
		"http_server_request_duration_seconds{http_request_method=POST,http_response_status_code=429,http_route=orders}":   1,
		"http_client_request_duration_seconds{http_request_method=GET,http_response_status_code=0,shanhai_upstream=order}": 1,
	}
	for k, n := range want {
		h := got[k]
		if h == nil || h.GetSampleCount() != n {
			t.Fatalf("%s: %v, want %d observations (all: %v)", k, h, n, got)
		}
		if len(h.GetBucket()) != len(durationBuckets) {
			t.Fatalf("%s: %d buckets, want %d", k, len(h.GetBucket()), len(durationBuckets))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("series %v, want exactly %v", got, want)
	}
	var exemplars []string
	for k, h := range got {
		for _, b := range h.GetBucket() {
			if e := b.GetExemplar(); e != nil {
				for _, l := range e.GetLabel() {
					if l.GetName() == "trace_id" {
						exemplars = append(exemplars, k+" "+l.GetValue())
					}
				}
			}
		}
	}
	if len(exemplars) != 1 || !strings.HasSuffix(exemplars[0], sc.TraceID().String()) || !strings.Contains(exemplars[0], "status_code=200") {
		t.Fatalf("exemplars %v, want one, of trace %s on the 200 series", exemplars, sc.TraceID())
	}
}

// histograms gathers reg's histograms by series, keyed
// name{label=value,...} with the labels in the registry's order.
func histograms(t *testing.T, reg *prometheus.Registry) map[string]*dto.Histogram {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*dto.Histogram{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var labels []string
			for _, l := range mt.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[mf.GetName()+"{"+strings.Join(labels, ",")+"}"] = mt.GetHistogram()
		}
	}
	return got
}
