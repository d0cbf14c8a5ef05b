package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// breakerTelemetry is the one provider of this test binary's Runs: pkg/breaker
// takes its meter from the global provider once per process, so a second
// Setup (with -count=2, say) would leave the breakers reporting to the first.
var breakerTelemetry = sync.OnceValues(func() (*telemetry.Provider, error) {
	return telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "gateway-breaker-test"})
})

// TestRunLeavesNoBreakerStateReportedAfterItStops: each Run builds a breaker
// and an adaptive concurrency limit per upstream service, and each reports
// its state (shanhai.breaker.state, shanhai.limit.concurrency.limit) until it
// is closed. Run never closed the breakers, so in a process that lives on
// (tests, an embedder that runs the gateway again) every Run left its
// breakers reporting the state of a gateway that had stopped, and pinned them
// in memory, one set per Run; and the limits were unnamed, so they reported
// nothing at all while the gateway ran.
func TestRunLeavesNoBreakerStateReportedAfterItStops(t *testing.T) {
	tel, err := breakerTelemetry()
	if err != nil {
		t.Fatal(err)
	}
	etcd, redisURL := testenv.Etcd(t), testenv.Redis(t)
	for run := 1; run <= 2; run++ {
		addrs, err := freeport.Addrs(1)
		if err != nil {
			t.Fatal(err)
		}
		env := map[string]string{
			"HTTP_ADDR": addrs[0], "ADMIN_ADDR": "", "GATEWAY_TRANSPORT": "fasthttp",
			"ETCD_ENDPOINTS": strings.Join(etcd, ","), "REDIS_URL": redisURL,
			"DISCOVERY_STATIC":    "user=127.0.0.1:1,order=127.0.0.1:1,payment=127.0.0.1:1",
			"GATEWAY_DYNAMIC_KEY": "breakerclose-test",
		}
		ctx, stop := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- Run(ctx, Options{Env: env, Logger: slog.New(slog.DiscardHandler), Telemetry: tel}) }()
		for deadline := time.Now().Add(20 * time.Second); !healthy("http://" + addrs[0] + "/healthz"); time.Sleep(20 * time.Millisecond) {
			select {
			case err := <-done:
				stop()
				t.Fatalf("run %d: Run = %v before it served", run, err)
			default:
			}
			if time.Now().After(deadline) {
				stop()
				t.Fatalf("run %d: the gateway never answered /healthz", run)
			}
		}
		for _, name := range []string{"shanhai_breaker_state", "shanhai_limit_concurrency_limit"} {
			if n := seriesNamed(t, tel, name); n != 3 {
				stop()
				t.Fatalf("run %d: %d %s series while the gateway runs, want one per upstream service (3)", run, n, name)
			}
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("run %d: Run = %v after a clean stop", run, err)
		}
		for _, name := range []string{"shanhai_breaker_state", "shanhai_limit_concurrency_limit"} {
			if n := seriesNamed(t, tel, name); n != 0 {
				t.Errorf("run %d stopped, yet %d %s series are still reported: never closed", run, n, name)
			}
		}
	}
}

func healthy(url string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// seriesNamed counts the series of the metric family name (as exposed, with
// or without a unit suffix) a scrape of tel's registry would show now.
func seriesNamed(t *testing.T, tel *telemetry.Provider, name string) int {
	t.Helper()
	families, err := tel.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), name) {
			n += len(f.GetMetric())
		}
	}
	return n
}
