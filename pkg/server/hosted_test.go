package server

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// Under Hosted a server ignores SIGTERM (its host stops it by ctx), while an
// ordinary server in the same process stops on it.
func TestHostedServerLeavesSignalsToItsHost(t *testing.T) {
	// Our own registration keeps the signal from killing the test binary
	// whatever the servers do.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	defer signal.Stop(sig)

	serve := func(ctx context.Context) (string, chan error) {
		s, _ := newTestServer(t, Options{Name: "t", ShutdownTimeout: time.Second})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, ln) }()
		url := "http://" + ln.Addr().String() + "/healthz"
		waitUp(t, url)
		return url, done
	}
	hostCtx, stopHosted := context.WithCancel(context.Background())
	defer stopHosted()
	hostedURL, hostedDone := serve(Hosted(hostCtx))
	_, plainDone := serve(context.Background())

	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-plainDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the ordinary server did not stop on SIGTERM")
	}
	select {
	case err := <-hostedDone:
		t.Fatalf("the hosted server stopped on SIGTERM: %v", err)
	default:
	}
	if resp, err := http.Get(hostedURL); err != nil {
		t.Fatalf("hosted server after SIGTERM: %v", err)
	} else {
		resp.Body.Close()
	}
	stopHosted()
	select {
	case err := <-hostedDone:
		if err != nil {
			t.Fatalf("hosted server: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hosted server did not stop when its ctx ended")
	}
}

func waitUp(t *testing.T, url string) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never answered", url)
}

// A hosted server told when its callers by discovery have stopped waits
// after deregistering only until then, not its whole DeregisterDelay; one
// never told (a production binary) waits the delay out. The shutdown log
// says which ended the wait.
func TestDeregisterDelayEndsWhenTheHostsCallersStopped(t *testing.T) {
	serve := func(ctx context.Context, delay time.Duration) (*testenv.LogBuffer, context.CancelFunc, chan error) {
		s, logs := newTestServer(t, Options{Name: "t", ShutdownTimeout: time.Second,
			Deregister: func(context.Context) error { return nil }, DeregisterDelay: delay})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, ln) }()
		waitUp(t, "http://"+ln.Addr().String()+"/healthz")
		return logs, stop, done
	}
	wait := func(name string, done chan error) {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s had not stopped 30 s after its ctx ended", name)
		}
	}
	wantLine := func(name string, logs *testenv.LogBuffer, endedBy string) {
		t.Helper()
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, `"step":"deregister delay"`) {
				if !strings.Contains(line, `"ended_by":"`+endedBy+`"`) {
					t.Errorf("%s: %s, want ended_by %q", name, line, endedBy)
				}
				return
			}
		}
		t.Errorf("%s logged no deregister delay step:\n%s", name, logs)
	}

	// The callers stopped before this server: no wait at all, however long
	// the delay.
	gone := make(chan struct{})
	close(gone)
	logs, stop, done := serve(CallersStopped(Hosted(context.Background()), gone), time.Hour)
	stop()
	wait("the server whose callers had stopped", done)
	wantLine("the server whose callers had stopped", logs, "callers stopped")

	// The callers still run when the stop begins: the wait lasts until they
	// have stopped.
	gone = make(chan struct{})
	logs, stop, done = serve(CallersStopped(Hosted(context.Background()), gone), time.Hour)
	stop()
	for !strings.Contains(logs.String(), `"step":"deregister"`) {
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("the server stopped (%v) while its callers still ran", err)
	default:
	}
	close(gone)
	wait("the server whose callers stopped during its wait", done)
	wantLine("the server whose callers stopped during its wait", logs, "callers stopped")

	// Not told (its own binary): the delay, as before.
	logs, stop, done = serve(context.Background(), 50*time.Millisecond)
	stop()
	wait("the server not told", done)
	wantLine("the server not told", logs, "delay")
}
