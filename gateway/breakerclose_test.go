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
// per upstream service, and each breaker registers a callback that reports
// its state (shanhai.breaker.state) until it is closed. Run never closed
// them, so in a process that lives on (tests, an embedder that runs the
// gateway again) every Run left its breakers reporting the state of a
// gateway that had stopped, and pinned them in memory, one set per Run.
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
		if n := breakerStateSeries(t, tel); n == 0 {
			stop()
			t.Fatalf("run %d: no shanhai.breaker.state series while the gateway runs: the test cannot see the breakers", run)
		}
		stop()
		if err := <-done; err != nil {
			t.Fatalf("run %d: Run = %v after a clean stop", run, err)
		}
		if n := breakerStateSeries(t, tel); n != 0 {
			t.Errorf("run %d stopped, yet %d shanhai.breaker.state series are still reported: its breakers were never closed", run, n)
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

// breakerStateSeries counts the shanhai.breaker.state series a scrape of
// tel's registry would show now.
func breakerStateSeries(t *testing.T, tel *telemetry.Provider) int {
	t.Helper()
	families, err := tel.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "shanhai_breaker_state") {
			n += len(f.GetMetric())
		}
	}
	return n
}
