package server

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestStopWithAHungRegistryAndADeadCollectorKeepsItsDeadline: the deregistration and the telemetry flush had a whole
// ShutdownTimeout each, on top of the drain's and the hooks', and no stop budget counted them (deploy/stopgrace_test.go
// gave them a 2 s margin): with etcd not answering and a collector that accepts and never answers, a stop took two
// ShutdownTimeouts more than its budget and the orchestrator's SIGKILL came first. The deregistration now has
// DeregisterTimeout, and the flush what is left of the stop's one deadline, never less than FlushFloor; the drain
// still comes after the deregistration and gets its whole ShutdownTimeout, so the request in flight is answered.
func TestStopWithAHungRegistryAndADeadCollectorKeepsItsDeadline(t *testing.T) {
	hung := testenv.Hung(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+hung)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	p, err := telemetry.Setup(context.Background(), telemetry.Options{ServiceName: "server-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_ = p.Shutdown(ctx)
	}()
	// Something to flush: the collector is asked for it and never answers.
	_, span := p.Tracer.Tracer("server-test").Start(context.Background(), "last request")
	span.End()

	const shutdown = 4 * time.Second
	deregistered := make(chan struct{})
	s, logs := newTestServer(t, Options{Telemetry: p, ShutdownTimeout: shutdown,
		// etcd's lease revoke, to a registry that accepts the connection and never answers.
		Deregister: func(ctx context.Context) error {
			defer close(deregistered)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+hung+"/v3/lease/revoke", nil)
			if err != nil {
				return err
			}
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			return err
		}})
	arrived := make(chan struct{})
	s.Router().GET("/slow", func(c *gin.Context) {
		close(arrived)
		<-deregistered // still running when the drain begins
		c.String(http.StatusOK, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- s.Serve(ctx, ln) }()
	answer := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/slow")
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		answer <- resp.Status + " " + string(b)
	}()
	<-arrived
	began := time.Now()
	cancel()
	<-runErr // the deregistration and the flush fail: that is logged and returned, and the stop goes on
	took := time.Since(began)

	if got := <-answer; got != "200 OK done" {
		t.Errorf("request in flight when the stop began got %q, want 200 OK done: the drain must follow the deregistration\n%s", got, logs)
	}
	// The stop's deadline: the deregistration's bound, the drain's ShutdownTimeout, the flush's floor (no hooks, no
	// deregister delay). A timer's lateness on a loaded machine is allowed a second; the old stop took 2 x 4 s.
	ceiling := DeregisterTimeout + shutdown + FlushFloor
	if took > ceiling+time.Second {
		t.Errorf("stop took %v with a hung registry and a dead collector, want at most %v (its deadline)\n%s", took, ceiling, logs)
	}
}
