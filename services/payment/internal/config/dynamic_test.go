package config_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/dynconfig"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	paymentconfig "github.com/shanhai-dev/shanhai/services/payment/internal/config"
)

// TestBadDynamicSettingsAreRejected: the values the environment refuses
// (PROVIDER_FAILURE_RATE outside 0..1, a p99 below the median, a negative
// DECLINE_ABOVE_CENTS) are refused in etcd too, and so are currencies that
// are not ISO 4217 codes, a name the document does not have (a misspelt
// field) and a name given twice; the last good document stays in force:
// pkg/dynconfig decodes with the type's UnmarshalJSON and calls its Validate.
func TestBadDynamicSettingsAreRejected(t *testing.T) {
	cli, key := settingsKey(t)
	v, err := dynconfig.Watch(t.Context(), cli, key, paymentconfig.Dynamic{LatencyMedianMs: 5, LatencyP99Ms: 25, DeclineAboveCents: 100000})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var applied []paymentconfig.Dynamic
	v.OnChange(func(d paymentconfig.Dynamic) {
		mu.Lock()
		defer mu.Unlock()
		applied = append(applied, d)
	})
	put := func(doc string) {
		t.Helper()
		if _, err := cli.Put(t.Context(), key, doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{
		`{"latency_median_ms":50,"latency_p99_ms":1,"failure_rate":-3,"decline_above_cents":-1}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":1.5,"decline_above_cents":100000}`,
		`{"latency_median_ms":-1,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":-1}`,
		`{"latency_median_ms":20000,"latency_p99_ms":60000,"failure_rate":0,"decline_above_cents":100000}`,
		// A currency no order can carry (orders' are three upper-case
		// letters) would decline every order as currency_not_supported.
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000,"currencies":["eur"]}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000,"currencies":["EUR","EURO"]}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000,"currencies":[""]}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000,"currencies":[" EUR"]}`,
		// A misspelt name set nothing: its field took its zero value, so
		// "decline_above_cent" switched the decline rule off (every total
		// charged), "currency" the currency rule, "failure-rate" the fault
		// injection asked for, while the log said the document was applied.
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cent":100000}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000,"currency":["EUR"]}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure-rate":1,"decline_above_cents":100000}`,
		// A name given twice: encoding/json kept the last (0, the rule off)
		// where a reviewer or a first-key-wins reader saw the first.
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000,"decline_above_cents":0}`,
		`{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cents":100000,"DECLINE_ABOVE_CENTS":0}`,
	} {
		put(bad)
	}
	// The watch applies changes in order, so once this one is in, every
	// earlier document was either applied (and recorded) or rejected.
	good := paymentconfig.Dynamic{LatencyMedianMs: 1, LatencyP99Ms: 2, FailureRate: 0.5, DeclineAboveCents: 300, Currencies: []string{"EUR", "USD"}}
	b, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	put(string(b))
	runtest.Eventually(t, 10*time.Second, "the good document", func() bool { return v.Load().DeclineAboveCents == good.DeclineAboveCents })
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 1 {
		t.Fatalf("applied %+v; want only the good document", applied)
	}
}

// TestBadDynamicSettingsAtStartLeaveTheEnvironments: a document refused
// while payment runs keeps the last good one; one already in etcd when it
// starts has none before it, so the initial settings (the environment's)
// stand, and the start goes on. A misspelt name was applied at start too,
// as the decline rule off.
func TestBadDynamicSettingsAtStartLeaveTheEnvironments(t *testing.T) {
	cli, key := settingsKey(t)
	if _, err := cli.Put(t.Context(), key, `{"latency_median_ms":5,"latency_p99_ms":25,"failure_rate":0,"decline_above_cent":100000}`); err != nil {
		t.Fatal(err)
	}
	initial := paymentconfig.Dynamic{LatencyMedianMs: 5, LatencyP99Ms: 25, DeclineAboveCents: 100000}
	v, err := dynconfig.Watch(t.Context(), cli, key, initial)
	if err != nil {
		t.Fatalf("Watch with a refused document in etcd: %v; want the start to go on", err)
	}
	if got := v.Load(); got.DeclineAboveCents != initial.DeclineAboveCents || v.Revision() != 0 {
		t.Fatalf("started with %+v at revision %d; want the initial settings %+v", got, v.Revision(), initial)
	}
}

// settingsKey is a client of the test etcd and a settings key of the test's
// own, deleted when it ends.
func settingsKey(t *testing.T) (*clientv3.Client, string) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	key := "/shanhai/test/payment-config/" + svctest.Random(4)
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), key) })
	return cli, key
}
