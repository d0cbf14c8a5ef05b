package main

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
)

// silentListener accepts TCP connections (the kernel does, from its
// backlog) and never answers: a port something holds that is not the
// server the run wants.
func silentListener(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.Addr().String()
}

// The embedded run with a PULSAR_URL nothing answers at (still exported by
// an earlier eval "$(./scripts/deps.sh env)", the servers since stopped)
// says so before anything starts; it used to wait, silent, forever.
func TestEmbeddedRunRefusesAPulsarNothingAnswersAt(t *testing.T) {
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	t.Setenv("PULSAR_URL", "pulsar://"+addr)
	t.Setenv("PULSAR_ADMIN_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard only
	defer cancel()
	p, err := Start(ctx, Options{DataDir: t.TempDir()})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with nothing answering at PULSAR_URL")
	}
	for _, want := range []string{"PULSAR_URL (" + addr + ")", "make deps-up", "unset PULSAR_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error = %q, want it to contain %q", err, want)
		}
	}
}

// A part that never gets ready (the bridge, its Pulsar a listener that
// never answers: the dial check passes) ends the start-up at its limit with
// an error naming that part and its log, instead of a silent wait.
func TestStartNamesThePartNotReadyWithinItsLimit(t *testing.T) {
	t.Setenv("PULSAR_URL", "pulsar://"+silentListener(t))
	t.Setenv("PULSAR_ADMIN_URL", "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second) // hang guard only
	defer cancel()
	data := t.TempDir()
	p, err := Start(ctx, Options{DataDir: data, ReadyTimeout: 15 * time.Second})
	if err == nil {
		p.Stop()
		t.Fatal("Start succeeded with the bridge's Pulsar never answering")
	}
	if ctx.Err() != nil {
		t.Fatalf("Start returned only after the test's own guard: %v", err)
	}
	for _, want := range []string{"bridge not ready", "not ready within the start-up limit of 15s", "log: " + filepath.Join(data, "logs", "bridge.log")} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Start error = %q, want it to contain %q", err, want)
		}
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start error = %v, want it to wrap context.DeadlineExceeded", err)
	}
}
