package server

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
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
