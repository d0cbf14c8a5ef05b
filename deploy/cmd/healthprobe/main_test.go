package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
)

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()

	if err := probe(srv.URL, time.Second); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := probe(srv.URL, time.Second); err == nil {
		t.Fatal("503 answered as healthy")
	}
	srv.Close()
	if err := probe(srv.URL, time.Second); err == nil {
		t.Fatal("closed server answered as healthy")
	}
}

// readyTimeout is pkg/server's Options.ReadyTimeout default (deploy's rollout_test.go keeps the same number): /readyz
// gives its checks that long before it answers.
const readyTimeout = 2 * time.Second

// TestTimeoutOutwaitsReadyzWithinComposesHealthchecks: the probe waits longer than /readyz takes to answer, so a
// check that passes after a second or two is not a failed healthcheck and a failing one is reported as the 503 it
// gets, and it gives up before docker's healthcheck timeout kills it, so what it prints reaches `docker inspect`.
// At 2 s, the same as /readyz's budget, a slow check that passed could still time the probe out, as the
// Kubernetes readiness probes' 1 s default did before they were given 3 s (deploy's rollout_test.go).
func TestTimeoutOutwaitsReadyzWithinComposesHealthchecks(t *testing.T) {
	if timeout <= readyTimeout {
		t.Errorf("the probe waits %v, no longer than the %v /readyz gives its checks", timeout, readyTimeout)
	}
	opts, err := cli.NewProjectOptions([]string{"../../compose/compose.yaml"}, cli.WithName("shanhai"), cli.WithEnv(nil))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	probed := 0
	for name, s := range p.Services {
		if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[1] != "/healthprobe" {
			continue
		}
		probed++
		if s.HealthCheck.Timeout == nil || time.Duration(*s.HealthCheck.Timeout) <= timeout {
			t.Errorf("%s: its healthcheck's timeout does not leave the probe its %v", name, timeout)
		}
	}
	if probed == 0 {
		t.Fatal("no compose healthcheck runs /healthprobe: follow them here")
	}
}
