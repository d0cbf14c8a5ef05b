package server

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// An optional dependency that is down, hung or back never fails readiness,
// and the log says when it went and when it came back, once each.
func TestOptionalNeverFailsAndLogsChanges(t *testing.T) {
	var logs testenv.LogBuffer
	results := make(chan error)
	var running, most atomic.Int32
	ch := Optional("redis", func(context.Context) error {
		n := running.Add(1)
		defer running.Add(-1)
		if n > most.Load() {
			most.Store(n)
		}
		return <-results
	}, slog.New(slog.NewTextHandler(&logs, nil)))

	waitLog := func(want string, n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); strings.Count(logs.String(), want) != n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("log %q %d times, want %d:\n%s", want, strings.Count(logs.String(), want), n, logs.String())
			}
		}
	}
	// Each round checks readiness until a probe takes the result: every
	// check answers nil at once, while the probe is held too.
	round := func(result error) {
		t.Helper()
		for {
			if err := ch.Probe(t.Context()); err != nil {
				t.Fatalf("Probe = %v, want nil whatever the dependency does", err)
			}
			select {
			case results <- result:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	down := errors.New("connection refused")
	round(down)
	waitLog("redis unreachable", 1)
	round(down)
	round(nil)
	waitLog("redis reachable again", 1)
	round(nil)
	round(down)
	waitLog("redis unreachable", 2)
	if n := strings.Count(logs.String(), "reachable again"); n != 1 {
		t.Fatalf("%d 'reachable again' lines, want 1:\n%s", n, logs.String())
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("%d probes ran at once, want 1", m)
	}
}
