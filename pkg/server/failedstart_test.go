package server

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/shanhai-dev/shanhai/pkg/telemetry"
)

// taken is a loopback address something already listens on, held until the
// test ends, so that a server told to listen there cannot bind it.
func taken(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// failedStartServer is a server whose stop is recorded in got: its
// deregistration, its one hook and its telemetry's shutdown.
func failedStartServer(t *testing.T, got *steps, o Options) *Server {
	t.Helper()
	p, err := telemetry.Setup(context.Background(), telemetry.Options{
		ServiceName:    "failed-start-test",
		SpanProcessors: []sdktrace.SpanProcessor{recordingProcessor{sdktrace.NewSimpleSpanProcessor(nopExporter{}), func() { got.add("telemetry flush") }}},
	})
	if err != nil {
		t.Fatal(err)
	}
	o.Telemetry = p
	o.ShutdownTimeout = 5 * time.Second
	o.Deregister = func(context.Context) error { got.add("deregister"); return nil }
	s, _ := newTestServer(t, o)
	s.OnShutdown(func(context.Context) error { got.add("hook"); return nil })
	return s
}

// within is fn's result, failing the test if it takes more than 20 s: a stop
// that waits DeregisterDelay (an hour here) for callers of an instance never
// registered.
func within(t *testing.T, fn func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the failed start did not return")
		return nil
	}
}

// A start that fails after the hooks were added still runs them, once, and
// flushes telemetry: in cmd/shanhai, where several services share one
// process, nothing else would close the failed service's database, brokers
// and etcd client while the process lives. Nothing was served, so there is
// nothing to drain and no caller to wait for.
func TestFailedStartRunsHooksOnce(t *testing.T) {
	want := []string{"deregister", "hook", "telemetry flush"}

	t.Run("admin listener cannot bind", func(t *testing.T) {
		var got steps
		adminAddr := taken(t)
		s := failedStartServer(t, &got, Options{AdminAddr: adminAddr, DeregisterDelay: time.Hour})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		err = within(t, func() error {
			return s.ServeStarting(context.Background(), ln, func(context.Context) error {
				got.add("step")
				return nil
			})
		})
		if err == nil || !strings.Contains(err.Error(), "listen admin "+adminAddr) {
			t.Fatalf("ServeStarting = %v, want the admin listener's error", err)
		}
		if !reflect.DeepEqual(got.get(), want) {
			t.Fatalf("stop %v, want %v", got.get(), want)
		}
		// The main listener it was given is closed too.
		if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept on the given listener = %v, want it closed", err)
		}
	})

	t.Run("main listener cannot bind", func(t *testing.T) {
		var got steps
		addr := taken(t)
		s := failedStartServer(t, &got, Options{Addr: addr, DeregisterDelay: time.Hour})
		err := within(t, func() error { return s.Run(context.Background()) })
		if err == nil || !strings.Contains(err.Error(), "listen "+addr) {
			t.Fatalf("Run = %v, want the listener's error", err)
		}
		if !reflect.DeepEqual(got.get(), want) {
			t.Fatalf("stop %v, want %v", got.get(), want)
		}
	})

	t.Run("start-up step fails", func(t *testing.T) {
		var got steps
		s := failedStartServer(t, &got, Options{})
		_, done := serveStarting(t, s, context.Background(), func(context.Context) error {
			return errors.New("consumer: stream not found")
		})
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "stream not found") {
				t.Fatalf("ServeStarting = %v, want the step's error", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a failed step did not stop the server")
		}
		if !reflect.DeepEqual(got.get(), want) {
			t.Fatalf("stop %v, want %v", got.get(), want)
		}
	})
}
