package dynconfig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

var metrics = sdkmetric.NewManualReader()

// TestMain installs a recording meter provider, as telemetry.Setup installs one in a binary.
func TestMain(m *testing.M) {
	otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(metrics)))
	os.Exit(m.Run())
}

// rejectedCount is the dynconfig.rejected count recorded for key.
func rejectedCount(t *testing.T, key string) int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := metrics.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == "dynconfig.rejected" {
				for _, p := range sum.DataPoints {
					if v, _ := p.Attributes.Value(attribute.Key("key")); v.AsString() == key {
						return p.Value
					}
				}
			}
		}
	}
	return 0
}

// etcdClient connects to the shared test etcd; testenv fails the test
// (never skips) when it is not running.
func etcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	eps := testenv.Etcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := cli.Status(ctx, eps[0]); err != nil {
		t.Fatalf("etcd at %v not answering: %v", eps, err)
	}
	return cli
}

type limits struct {
	PerIP  int            `json:"per_ip"`
	Canary map[string]int `json:"canary"`
}

func (l limits) Validate() error {
	if l.PerIP <= 0 {
		return errors.New("per_ip must be positive")
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchAppliesGoodValuesAndKeepsLastGood(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t)
	name := fmt.Sprintf("test-%d", time.Now().UnixNano())
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), Key(name)) })

	v, err := Watch(ctx, cli, name, limits{PerIP: 100})
	if err != nil {
		t.Fatal(err)
	}
	if v.Load().PerIP != 100 {
		t.Fatalf("absent key: %+v, want the initial value", v.Load())
	}
	var changes atomic.Int32
	v.OnChange(func(limits) { changes.Add(1) })

	put := func(val string) int64 {
		resp, err := cli.Put(ctx, Key(name), val)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Header.Revision
	}
	good := put(`{"per_ip": 50, "canary": {"v2": 10}, "added_later": true}`)
	waitFor(t, "first value", func() bool { return v.Revision() == good })
	if got := v.Load(); got.PerIP != 50 || got.Canary["v2"] != 10 {
		t.Fatalf("applied %+v", got)
	}

	// Bad JSON, a null (which json.Unmarshal takes as all zero values), then
	// a value its Validate rejects, then a good one: only the last is applied,
	// in between the last good value stays, and each bad one is counted.
	put(`{"per_ip": 5`)
	put(`null`)
	put(`{"per_ip": -1}`)
	waitFor(t, "three rejections counted", func() bool { return rejectedCount(t, Key(name)) == 3 })
	if got := v.Load(); got.PerIP != 50 || v.Revision() != good {
		t.Fatalf("bad values replaced the last good one: %+v at rev %d", got, v.Revision())
	}
	next := put(`{"per_ip": 7}`)
	waitFor(t, "value after bad ones", func() bool { return v.Revision() == next })
	if got := v.Load(); got.PerIP != 7 || got.Canary != nil {
		t.Fatalf("applied %+v, want per_ip 7 and no canary (the document is the whole config)", got)
	}

	if _, err := cli.Delete(ctx, Key(name)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delete", func() bool { return v.Load().PerIP == 100 })
	if n := changes.Load(); n != 3 {
		t.Fatalf("OnChange ran %d times, want 3 (two good values and the delete)", n)
	}
}

func TestWatchReadsExistingValueAtStart(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t)
	key := Key(fmt.Sprintf("test-%d", time.Now().UnixNano()))
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), key) })
	if _, err := cli.Put(ctx, key, `{"per_ip": 9}`); err != nil {
		t.Fatal(err)
	}
	v, err := Watch(ctx, cli, key, limits{PerIP: 1})
	if err != nil {
		t.Fatal(err)
	}
	if v.Load().PerIP != 9 {
		t.Fatalf("start value %+v, want the stored 9", v.Load())
	}
}

func TestDecodeIsStrictAboutValidity(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"per_ip": 1}`, true},
		{`{"per_ip": "1"}`, false},
		{`{"per_ip": 0}`, false},
		{`[]`, false},
		{``, false},
	} {
		_, err := decode[limits]([]byte(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("decode(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
	// Without a Validate to catch them, a null would have been every field zero.
	type plain struct{ Weight int }
	for _, in := range []string{`null`, " null\n"} {
		if got, err := decode[plain]([]byte(in)); err == nil {
			t.Errorf("decode(%q) = %+v, want an error", in, got)
		}
	}
}
