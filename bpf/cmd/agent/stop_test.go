package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"
)

// noExport is a telemetry provider with nothing to export.
type noExport struct{}

func (noExport) Shutdown(context.Context) error { return nil }

// slowDetach is Agent.Close taking longer than stopTimeout, as the detach of a few executables does (about 2 s each).
// The time is the case under test, not a wait for something.
type slowDetach struct{}

func (slowDetach) Close() error {
	time.Sleep(2 * stopTimeout)
	return nil
}

// TestStopServesTheScrapeThatWaitedForTheDetach: a scrape in flight when the server stops, after a detach that took
// longer than stopTimeout, is answered and shutdown returns no error. The server's shutdown used the export's
// context, expired by then: the scrape was cut off and the agent exited with status 1 ("context deadline exceeded").
func TestStopServesTheScrapeThatWaitedForTheDetach(t *testing.T) {
	defer func(d time.Duration) { stopTimeout = d }(stopTimeout)
	stopTimeout = time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, stopping := make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(entered)
		<-stopping // the scrape is still being answered when the server's shutdown starts
		w.Write([]byte("ok\n"))
	})}
	srv.RegisterOnShutdown(func() { close(stopping) })
	go srv.Serve(ln)
	scraped := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		scraped <- err
	}()
	<-entered
	if err := shutdown(noExport{}, slowDetach{}, srv, nil, nil); err != nil {
		t.Errorf("shutdown with a scrape in flight after a slow detach: %v", err)
	}
	if err := <-scraped; err != nil {
		t.Errorf("the scrape in flight at the stop: %v", err)
	}
}
