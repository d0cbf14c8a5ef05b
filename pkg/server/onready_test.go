package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// OnReady runs once, and only when the first 200 from /readyz has reached
// the client whole: not for a 503 (a step still running, a failing check),
// not before the answer is out (the hook below waits for the client to have
// read it), and not for later 200s.
func TestOnReadyRunsOnceAfterTheFirstReadyAnswerIsSent(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var calls atomic.Int32
	clientHasIt := make(chan struct{})
	hookSaw := make(chan error, 1)
	s, _ := newTestServer(t, Options{
		ShutdownTimeout: 5 * time.Second,
		Checks: []Check{{Name: "dep", Probe: func(context.Context) error {
			if down.Load() {
				return errors.New("down")
			}
			return nil
		}}},
		OnReady: func() {
			calls.Add(1)
			select {
			case <-clientHasIt:
				hookSaw <- nil
			case <-time.After(5 * time.Second):
				hookSaw <- errors.New("OnReady ran while the client was still waiting for the first 200")
			}
		},
	})
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := serveStarting(t, s, ctx, func(context.Context) error { <-release; return nil })
	client := &http.Client{Timeout: 20 * time.Second}
	readyz := func() (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + addr + "/readyz")
		if err != nil {
			t.Fatalf("/readyz: %v", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("/readyz body: %v", err)
		}
		return resp.StatusCode, string(b)
	}

	if code, _ := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while the step runs, want 503", code)
	}
	close(release)
	for {
		code, body := readyz()
		if code != http.StatusServiceUnavailable {
			t.Fatalf("/readyz %d %s with a failing check, want 503", code, body)
		}
		if strings.Contains(body, "not ready: dep") {
			break // the step is done: now only the check fails
		}
		time.Sleep(time.Millisecond)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("OnReady ran %d times before any 200", n)
	}
	down.Store(false)
	code, body := readyz()
	if code != http.StatusOK || body != `{"status":"ready"}` {
		t.Fatalf("/readyz %d %q, want 200 {\"status\":\"ready\"}", code, body)
	}
	close(clientHasIt)
	if err := <-hookSaw; err != nil {
		t.Fatal(err)
	}
	if code, body := readyz(); code != http.StatusOK || body != `{"status":"ready"}` {
		t.Fatalf("second /readyz %d %q", code, body)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("OnReady ran %d times, want once", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
