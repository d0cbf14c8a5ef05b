package discoverable

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/server"
)

// registry records what is registered and deregistered, and can fail.
type registry struct {
	mu          sync.Mutex
	registered  []discovery.Instance
	deregisters int
	err         error
}

func (r *registry) Register(_ context.Context, in discovery.Instance) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered = append(r.registered, in)
	return r.err
}

func (r *registry) Deregister(context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deregisters++
	return nil
}

func newServer(reg discovery.Registry) *server.Server {
	return server.New(server.Options{
		Name: "demo", ShutdownTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler),
		Deregister: reg.Deregister,
	})
}

// freeAddr is a loopback address nothing listens on, for Serve to take.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestServeRegistersWhereItListensAndIsReadyAfterBoth: the instance is
// registered with the address it listens on (or ADVERTISE_ADDR), /readyz
// answers 200 only once both the workers' start and the registration are
// done, and the stop deregisters it.
func TestServeRegistersWhereItListensAndIsReadyAfterBoth(t *testing.T) {
	for _, advertise := range []string{"", "10.0.0.7:8082"} {
		reg := &registry{}
		addr := freeAddr(t)
		release := make(chan struct{})
		ctx, stop := context.WithCancel(server.Hosted(t.Context()))
		served := make(chan error, 1)
		go func() {
			served <- Serve(ctx, Instance{
				Server: newServer(reg), Addr: addr, Advertise: advertise, Registry: reg,
				In:    discovery.Instance{Service: "demo", Version: "v1", Zone: "z"},
				Start: func(context.Context) error { <-release; return nil },
			})
		}()
		readyz := func() int {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return 0
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode
		}
		for deadline := time.Now().Add(10 * time.Second); readyz() == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("never listening")
			}
		}
		if code := readyz(); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz %d while the workers are still starting, want 503", code)
		}
		close(release)
		for deadline := time.Now().Add(10 * time.Second); readyz() != http.StatusOK; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("never ready after both steps")
			}
		}
		stop()
		if err := <-served; err != nil {
			t.Fatalf("Serve = %v after a clean stop", err)
		}
		want := discovery.Instance{Service: "demo", Version: "v1", Zone: "z", Addr: addr}
		if advertise != "" {
			want.Addr = advertise
		}
		if len(reg.registered) != 1 || !reflect.DeepEqual(reg.registered[0], want) || reg.deregisters != 1 {
			t.Errorf("registered %+v, deregistered %d times; want %+v once, then deregistered", reg.registered, reg.deregisters, want)
		}
	}
}

// TestServeReportsWhatFailed: an address it cannot listen on stops the
// server as a failed start (its hooks, which close what the service opened,
// run once; the lease taken at wiring is revoked) and says which; a
// registration that fails shuts the server down and is returned.
func TestServeReportsWhatFailed(t *testing.T) {
	reg := &registry{}
	srv := newServer(reg)
	hooks := 0
	srv.OnShutdown(func(context.Context) error { hooks++; return nil })
	err := Serve(t.Context(), Instance{
		Server: srv, Addr: "127.0.0.1:-1", Registry: reg,
		Start: func(context.Context) error { t.Error("started without a listener"); return nil },
	})
	if err == nil || !strings.HasPrefix(err.Error(), "listen 127.0.0.1:-1: ") || hooks != 1 || reg.deregisters != 1 {
		t.Errorf("Serve on a bad address = %v, hooks run %d, deregistered %d; want the listen error, hooks once, deregistered once",
			err, hooks, reg.deregisters)
	}

	refused := errors.New("etcd refused")
	reg = &registry{err: refused}
	err = Serve(server.Hosted(t.Context()), Instance{
		Server: newServer(reg), Addr: freeAddr(t), Registry: reg,
		Start: func(context.Context) error { return nil },
	})
	if !errors.Is(err, refused) || !strings.Contains(err.Error(), "register in discovery: ") {
		t.Errorf("Serve with a failing registration = %v, want it named", err)
	}
}

// TestOpenStaticWithoutEndpoints: no etcd endpoints means the
// DISCOVERY_STATIC list, with no client to close; a bad list is named.
func TestOpenStaticWithoutEndpoints(t *testing.T) {
	reg, err := Open(t.Context(), nil, "user=127.0.0.1:8081", slog.New(slog.DiscardHandler))
	if err != nil || reg.Etcd != nil || reg.Registry == nil || reg.Close() != nil {
		t.Fatalf("Open static = %+v, %v", reg, err)
	}
	if _, ok := reg.Registry.(*discovery.Static); !ok {
		t.Errorf("registry %T, want the static list", reg.Registry)
	}
	if _, err := Open(t.Context(), nil, "no-equals-sign", slog.New(slog.DiscardHandler)); err == nil ||
		!strings.HasPrefix(err.Error(), "DISCOVERY_STATIC: ") {
		t.Errorf("Open with a bad static list = %v, want a DISCOVERY_STATIC error", err)
	}
}

// TestOpenFailsWhenEtcdDoesNotAnswer: with ETCD_ENDPOINTS naming nothing that
// answers, Open fails within the start bound, naming etcd, instead of
// waiting for the lease as long as its ctx (the service's whole life: a
// service hung at start, silently, before it listened). The etcd client
// dials lazily, so its DialTimeout bounds nothing. Both a closed port and a
// listener that accepts and never answers are tried.
func TestOpenFailsWhenEtcdDoesNotAnswer(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	go func() {
		var held []net.Conn // accepted and never answered, closed with the test
		defer func() {
			for _, c := range held {
				_ = c.Close()
			}
		}()
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	for name, addr := range map[string]string{"closed port": freeAddr(t), "silent listener": silent.Addr().String()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			type opened struct {
				reg Registry
				err error
			}
			got := make(chan opened, 1)
			go func() {
				reg, err := Open(context.Background(), []string{addr}, "", slog.New(slog.DiscardHandler))
				got <- opened{reg, err}
			}()
			select {
			case o := <-got:
				if o.reg.Etcd != nil {
					defer o.reg.Close()
				}
				if o.err == nil || !strings.Contains(o.err.Error(), "etcd") || !strings.Contains(o.err.Error(), addr) {
					t.Fatalf("Open with etcd at %s not answering = %v, want an error naming etcd and its address", addr, o.err)
				}
			case <-time.After(StartTimeout + 30*time.Second):
				t.Fatalf("Open still waiting for etcd at %s %v past the start bound", addr, 30*time.Second)
			}
		})
	}
}
