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
	"github.com/shanhai-dev/shanhai/pkg/testenv"
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
	for name, addr := range map[string]string{"closed port": testenv.ClosedPort(t), "silent listener": testenv.Hung(t)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var reg Registry
			err := testenv.Within(t, StartTimeout+30*time.Second, "Open with etcd at "+addr+" not answering", func() (err error) {
				reg, err = Open(context.Background(), []string{addr}, "", slog.New(slog.DiscardHandler))
				return err
			})
			if reg.Etcd != nil {
				defer reg.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "etcd") || !strings.Contains(err.Error(), addr) {
				t.Fatalf("Open with etcd at %s not answering = %v, want an error naming etcd and its address", addr, err)
			}
		})
	}
}

// TestServeFailsWhenEtcdStopsAnsweringBeforeTheRegistration: etcd granted
// the lease at Open, then stopped answering (it hung, or a proxy in front of
// it did) before Serve registered. The start fails within the start bound,
// saying etcd did not answer, instead of leaving the service listening and
// unready for good with nothing in its log.
func TestServeFailsWhenEtcdStopsAnsweringBeforeTheRegistration(t *testing.T) {
	front := newFreezer(t, testenv.Etcd(t)[0])
	reg, err := Open(t.Context(), []string{front.addr}, "", slog.New(slog.DiscardHandler))
	t.Cleanup(func() { _ = reg.Close() })
	if err != nil {
		t.Fatalf("Open through a proxy to the test etcd: %v", err)
	}
	front.freeze()
	err = testenv.Within(t, StartTimeout+30*time.Second, "Serve with etcd silent at registration", func() error {
		return Serve(server.Hosted(t.Context()), Instance{
			Server: newServer(reg.Registry), Addr: freeAddr(t), Registry: reg.Registry,
			In:    discovery.Instance{Service: "discoverable-test"},
			Start: func(context.Context) error { return nil },
		})
	})
	if err == nil || !strings.Contains(err.Error(), "register in discovery") || !strings.Contains(err.Error(), "no answer from etcd") {
		t.Fatalf("Serve with etcd silent at registration = %v, want the registration to fail saying etcd did not answer", err)
	}
}

// freezer is a TCP proxy to an etcd that can be made to stop answering
// without stopping the shared server: after freeze it forwards no byte on
// any connection, old or new, until the test ends.
type freezer struct {
	addr   string
	frozen chan struct{}
	once   sync.Once
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{addr: ln.Addr().String(), frozen: make(chan struct{})}
	ended := make(chan struct{})
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	hold := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	// pipe forwards src to dst until either fails or the proxy is frozen;
	// frozen, what it read is held back and it waits for the test's end.
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				select {
				case <-f.frozen:
					<-ended
					return
				default:
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			hold(c)
			select {
			case <-f.frozen:
				continue // accepted, never answered
			default:
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			hold(up)
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	t.Cleanup(func() {
		close(ended)
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return f
}

func (f *freezer) freeze() { f.once.Do(func() { close(f.frozen) }) }
