package service_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
	"github.com/shanhai-dev/shanhai/pkg/startgc"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
	"github.com/shanhai-dev/shanhai/services/order/internal/adapters"
	"github.com/shanhai-dev/shanhai/services/order/internal/config"
	"github.com/shanhai-dev/shanhai/services/order/internal/service"
)

// The collector is held (pkg/startgc) through the first 200 from /readyz
// and given back once it is sent. It used to be given back when the
// start-up steps ended, just before that answer, so the collection start-up
// had put off ran beside it: order's first 200 came later by the mark
// phase's CPU (2–5 ms per start in perf, more under load). The hold is once
// per process, so the service runs in a child process of its own.
func TestCollectorHeldThroughTheFirstReadyAnswer(t *testing.T) {
	if os.Getenv("ORDER_STARTGC_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCollectorHeldThroughTheFirstReadyAnswer$", "-test.count=1", "-test.v")
		// Without GOGC: an explicit setting turns the hold off.
		cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOGC=") }),
			"ORDER_STARTGC_CHILD=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	if !startgc.Held() {
		t.Fatal("collector not held at start")
	}
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	issuer := svctest.NewIssuer(t)
	stream := svctest.NewStream(t, "ORDER_GC")
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := config.Config{
		Addr: addr, ShutdownTimeout: 5 * time.Second, LogLevel: slog.LevelDebug, Version: "test",
		DatabaseURL: testenv.Postgres(t), RedisURL: testenv.Redis(t), NATSURL: testenv.NATS(t), KafkaBrokers: testenv.Kafka(t),
		JWKSURL: issuer.URL, CatalogCacheTTL: time.Minute,
	}
	names := adapters.Names{Stream: stream.Name, StreamSubjects: stream.Subjects(), Subject: stream.Prefix + adapters.PaymentsSubject}
	rec := &heldAtReady{}
	svc, err := service.New(context.Background(), cfg, service.Options{JetStream: names, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	runtest.Eventually(t, 30*time.Second, "/readyz 200", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if got := rec.held.Load(); got != 1 {
		t.Fatalf("collector held when the first ready answer was made: %v, want true (state %d: 0 no answer logged, 2 released)", got == 1, got)
	}
	runtest.Eventually(t, 10*time.Second, "collector given back after the first ready answer", func() bool { return !startgc.Held() })
}

// heldAtReady is a slog handler that notes, when the server logs its first
// ready answer (before sending it), whether the collector was still held.
type heldAtReady struct{ held atomic.Int32 } // 0: not logged yet, 1: held, 2: released

func (h *heldAtReady) Enabled(context.Context, slog.Level) bool { return true }
func (h *heldAtReady) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *heldAtReady) WithGroup(string) slog.Handler            { return h }
func (h *heldAtReady) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "first ready answer" {
		if startgc.Held() {
			h.held.Store(1)
		} else {
			h.held.Store(2)
		}
	}
	return nil
}
