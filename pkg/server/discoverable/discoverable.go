// Package discoverable is how a service that its callers find through
// discovery (user, order, payment) comes up: Open makes its registry while
// the service wires itself, and Serve listens, then serves while the
// service's workers start and it registers, both at once, so that /readyz
// answers 200 only when it is discoverable and working.
//
// It is apart from pkg/server because it links the etcd client and
// pkg/startgc (which holds the collector back from package initialisation
// on): a binary that uses pkg/server without discovery, the bridge, must
// not get either.
package discoverable

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/internal/etcdwatch"
	"github.com/shanhai-dev/shanhai/pkg/server"
	"github.com/shanhai-dev/shanhai/pkg/startgc"
)

// leaseTTL is how long an instance stays listed after its process died
// without deregistering (its keep-alives stop).
const leaseTTL = 10 * time.Second

// Registry is a service's registry in discovery, and the etcd client under
// it when there is one.
type Registry struct {
	discovery.Registry
	// Etcd is nil with the static list; with etcd, others may use it too
	// (the payment service watches its settings there).
	Etcd *clientv3.Client
}

// Close closes the etcd client, if any.
func (r Registry) Close() error {
	if r.Etcd == nil {
		return nil
	}
	return r.Etcd.Close()
}

// Open is the registry of ETCD_ENDPOINTS (endpoints) when they are given,
// else of DISCOVERY_STATIC (static). With etcd the lease is granted now,
// beside the service's other connections, so that registering, once the
// listen address is known, only writes its key; with no answer from etcd
// within StartTimeout (10 s) Open fails, naming the endpoints. On an error
// the Registry returned still holds what is to be closed.
func Open(ctx context.Context, endpoints []string, static string, log *slog.Logger) (Registry, error) {
	if len(endpoints) == 0 {
		st, err := discovery.NewStatic(static)
		if err != nil {
			return Registry{}, fmt.Errorf("DISCOVERY_STATIC: %w", err)
		}
		return Registry{Registry: st}, nil
	}
	cli, err := clientv3.New(discovery.EtcdConfig(endpoints, 2*time.Second, log))
	if err != nil {
		return Registry{}, fmt.Errorf("connect etcd %v: %w", endpoints, err)
	}
	reg := discovery.NewEtcdRegistry(cli, leaseTTL).WithLogger(log)
	// Bounded: the client dials lazily, so DialTimeout bounds nothing, and
	// ctx is the service's whole life; unbounded, a service whose etcd did
	// not answer hung here, silently, before it listened.
	if err := etcdwatch.AtStart(ctx, reg.Grant); err != nil {
		return Registry{Registry: reg, Etcd: cli}, fmt.Errorf("etcd %v: %w", endpoints, err)
	}
	return Registry{Registry: reg, Etcd: cli}, nil
}

// StartTimeout is how long Open waits for etcd to grant the lease, and Serve
// for the registration, before the start fails (ten seconds): the bound of
// every start's first etcd call (etcdwatch.StartTimeout).
const StartTimeout = etcdwatch.StartTimeout

// Instance is one service instance as Serve runs it.
type Instance struct {
	// Server is the service's wired server; Addr is where it listens
	// (HTTP_ADDR).
	Server *server.Server
	Addr   string
	// In is what is registered: Service, Version and Zone. Its Addr is
	// Advertise (ADVERTISE_ADDR) when set, else the address listened on.
	In        discovery.Instance
	Advertise string
	Registry  discovery.Registry
	// Start starts the service's workers (relay, consumers); it runs beside
	// the registration, as a start-up step of server.ServeStarting.
	Start func(context.Context) error
}

// Serve listens on i.Addr and serves i.Server until ctx ends or a signal
// arrives, then shuts down in pkg/server's order. i.Start and the
// registration run concurrently while the server comes up; /readyz answers
// 200 once both are done, and the collector held back since start-up
// (pkg/startgc) is let go after that. If either fails (the registration
// does with no answer from etcd within StartTimeout), the server shuts down
// and Serve returns why.
func Serve(ctx context.Context, i Instance) error {
	ln, err := net.Listen("tcp", i.Addr)
	if err != nil {
		// The server's hooks close what the service opened; its lease is
		// revoked and its telemetry flushed, as for any start that failed.
		return i.Server.StartFailed(fmt.Errorf("listen %s: %w", i.Addr, err))
	}
	in := i.In
	in.Addr = discovery.AdvertiseAddr(i.Advertise, ln.Addr())
	return i.Server.ServeStarting(ctx, ln, startgc.Steps(i.Start, func(ctx context.Context) error {
		// Bounded as Open's grant: an etcd that stopped answering since
		// then left the service listening and unready for good, with
		// nothing in its log. A static registry answers at once.
		if err := etcdwatch.AtStart(ctx, func(ctx context.Context) error { return i.Registry.Register(ctx, in) }); err != nil {
			return fmt.Errorf("register in discovery: %w", err)
		}
		return nil
	})...)
}
