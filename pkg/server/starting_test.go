package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveStarting runs ServeStarting on a fresh port and returns its address
// and the channel its result arrives on. Without steps it is Serve.
func serveStarting(t *testing.T, s *Server, ctx context.Context, steps ...func(context.Context) error) (string, chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServeStarting(ctx, ln, steps...) }()
	return ln.Addr().String(), done
}

// The server answers while a start-up step still runs, but is not ready
// until the step returns; shutdown waits for a step still running before it
// deregisters and runs the hooks.
func TestServeStartingReadyAfterStepsAndShutdownWaits(t *testing.T) {
	s, _ := newTestServer(t, Options{ShutdownTimeout: 5 * time.Second})
	release := make(chan struct{})
	quick := func(ctx context.Context) error {
		<-release
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := serveStarting(t, s, ctx, quick)
	readyz := func() int {
		deadline := time.Now().Add(5 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
				return resp.StatusCode
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz: %v", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if code := readyz(); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d while a step runs, want 503", code)
	}
	close(release)
	deadline := time.Now().Add(5 * time.Second)
	for readyz() != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz never 200 after the step returned")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var order steps
	s2, _ := newTestServer(t, Options{
		ShutdownTimeout: 5 * time.Second,
		Deregister:      func(context.Context) error { order.add("deregister"); return nil },
	})
	s2.OnShutdown(func(context.Context) error { order.add("hook"); return nil })
	lingering := func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // a registration that takes a while to give up
		order.add("step ended")
		return ctx.Err()
	}
	ctx, cancel = context.WithCancel(context.Background())
	_, done = serveStarting(t, s2, ctx, lingering)
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("ServeStarting: %v (a step's error after shutdown began is not a failure)", err)
	}
	if want := []string{"step ended", "deregister", "hook"}; !reflect.DeepEqual(order.get(), want) {
		t.Fatalf("order %v, want %v", order.get(), want)
	}
}

// A failing step shuts the server down in the usual order and is returned.
func TestServeStartingStepFailureShutsDown(t *testing.T) {
	var got steps
	s, _ := newTestServer(t, Options{
		ShutdownTimeout: 5 * time.Second,
		Deregister:      func(context.Context) error { got.add("deregister"); return nil },
	})
	s.OnShutdown(func(context.Context) error { got.add("hook"); return nil })
	ok := func(context.Context) error { got.add("ok step"); return nil }
	fail := func(context.Context) error {
		time.Sleep(20 * time.Millisecond)
		return errors.New("register in discovery: etcd unreachable")
	}
	_, done := serveStarting(t, s, context.Background(), ok, fail)
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "etcd unreachable") {
			t.Fatalf("ServeStarting = %v, want the step's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a failed step did not shut the server down")
	}
	if want := []string{"ok step", "deregister", "hook"}; !reflect.DeepEqual(got.get(), want) {
		t.Fatalf("order %v, want %v", got.get(), want)
	}
}

// OpenAll opens concurrently but registers the closers in the given order,
// whichever finished first and even when one failed.
func TestOpenAllClosesInGivenOrder(t *testing.T) {
	var (
		c      Cleanup
		mu     sync.Mutex
		closed []string
	)
	closer := func(name string) func() error {
		return func() error { mu.Lock(); closed = append(closed, name); mu.Unlock(); return nil }
	}
	boom := errors.New("nats: no servers")
	dbOpen := make(chan struct{})
	p := NewPhases()
	err := c.OpenAll(p,
		Opening{Name: "database", Open: func() (func() error, error) {
			<-dbOpen // finishes last
			return closer("database"), nil
		}},
		Opening{Name: "nats", Open: func() (func() error, error) { return nil, boom }},
		Opening{Name: "etcd", Open: func() (func() error, error) {
			defer close(dbOpen) // runs while the database opening waits: concurrent
			return closer("etcd"), nil
		}},
	)
	if !errors.Is(err, boom) {
		t.Fatalf("OpenAll = %v, want the failed opening's error", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"etcd", "database"}; !reflect.DeepEqual(closed, want) {
		t.Fatalf("closed %v, want %v (reverse of the given order)", closed, want)
	}
	pos := map[any]int{}
	args := p.Args()
	for i := 0; i < len(args); i += 2 {
		pos[args[i]] = i
	}
	if len(args) != 6 || pos["etcd"] > pos["database"] {
		t.Fatalf("phases %v, want all three, etcd before database", args)
	}
}
