package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/shanhai-dev/shanhai/gateway/internal/quota"
)

// A limit at its key cap evicts a key for each new one (quota.Lease), and
// that was only logged once a minute: no graph or alert could see a flood
// of IPv6 /64s pushing the per-IP limit's keys out. The evictions are a
// counter per limit beside the decisions, read at collection (what a
// /metrics scrape does through the Prometheus reader), and gone once
// unregistered.
func TestLimitEvictionsAreExported(t *testing.T) {
	// Redis refuses every connection: each key's fallback bucket decides
	// and holds the key, so distinct keys fill the limit.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	rate := quota.Rate{Count: 10, Period: time.Minute, Burst: 5}
	ip := quota.New(rdb, fmt.Sprintf("evictions-test:%d:ip", time.Now().UnixNano()), rate, 1, slog.New(slog.DiscardHandler))
	user := quota.New(rdb, fmt.Sprintf("evictions-test:%d:user", time.Now().UnixNano()), rate, 1, slog.New(slog.DiscardHandler))

	reader := sdkmetric.NewManualReader()
	reg, err := ExportEvictions(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)), map[string]Evicter{"ip": ip, "user": user})
	if err != nil {
		t.Fatal(err)
	}
	const extra = 1000
	for i := range quota.DefaultMaxKeys + extra {
		if _, err := ip.Allow(context.Background(), fmt.Appendf(nil, "2001:db8:%x:%x::/64", i>>16, i&0xffff)); err != nil {
			t.Fatal(err)
		}
	}
	if ip.Evictions() == 0 {
		t.Fatalf("%d distinct keys evicted none: the flood did not reach the cap", quota.DefaultMaxKeys+extra)
	}

	got := collectEvictions(t, reader)
	want := map[string]int64{"limit=ip": ip.Evictions(), "limit=user": 0}
	for k, v := range want {
		if n, ok := got[k]; !ok || n != v {
			t.Errorf("shanhai.gateway.limit.evictions{%s} = %d (present %v), want %d (all: %v)", k, n, ok, v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("shanhai.gateway.limit.evictions has series %v, want exactly %v", got, want)
	}

	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	if got := collectEvictions(t, reader); len(got) != 0 {
		t.Errorf("after Unregister the evictions still report %v", got)
	}
}

// collectEvictions collects reader once and returns the evictions counter's
// values by attribute set; it fails the test if the counter is not a
// monotonic sum.
func collectEvictions(t *testing.T, reader *sdkmetric.ManualReader) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, mt := range sm.Metrics {
			if mt.Name != "shanhai.gateway.limit.evictions" {
				continue
			}
			sum, ok := mt.Data.(metricdata.Sum[int64])
			if !ok || !sum.IsMonotonic {
				t.Fatalf("shanhai.gateway.limit.evictions is %T, want a monotonic sum", mt.Data)
			}
			for _, dp := range sum.DataPoints {
				got[dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Value
			}
		}
	}
	return got
}
