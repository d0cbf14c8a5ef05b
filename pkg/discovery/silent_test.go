package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A connection to etcd that goes silent (its host gone without a reset, a dropped NAT entry) sends no error: the
// watch on it waits for events, and the revision probe failing on it says nothing. The resolver's snapshot stopped
// changing, missing every instance registered since, for as long as the connection stayed open. A client made from
// EtcdConfig pings the connection, replaces it once the pings go unanswered, and resumes its watch on a new one.
func TestResolverFollowsEtcdAfterItsConnectionGoesSilent(t *testing.T) {
	ctx := t.Context()
	cli, proxy, eps := silencingClient(t)
	res, err := NewEtcdResolver(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}

	proxy.Silence()
	reg := NewEtcdRegistry(etcdClient(t, eps), 5*time.Second)
	svc := fmt.Sprintf("silent-%d", time.Now().UnixNano())
	if err := reg.Register(ctx, Instance{Service: svc, Addr: "127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	// The pings notice the silence within EtcdKeepAliveTime + EtcdKeepAliveTimeout; the rest is slack for a loaded
	// machine. Without them the resolver never saw the instance.
	took, ok := eventually(3*(EtcdKeepAliveTime+EtcdKeepAliveTimeout), func() bool { return len(res.Instances(svc)) == 1 })
	if !ok {
		t.Fatalf("the resolver stayed on its silent connection: %s had not appeared after %v", svc, took)
	}
	t.Logf("the resolver saw the instance %v after its connection went silent", took)
}

// The registry's side of the same silence: its keep-alives stop reaching etcd, the lease lapses and the instance is
// dropped, and the new lease was asked for on the silent connection, so the instance stayed unlisted for as long as
// that connection stayed open. On a client made from EtcdConfig it is listed again, under a new lease, once the
// pings have replaced the connection.
func TestRegistryComesBackAfterItsConnectionGoesSilent(t *testing.T) {
	ctx := t.Context()
	cli, proxy, eps := silencingClient(t)
	reg := NewEtcdRegistry(cli, 2*time.Second).WithLogger(slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		// Bounded: on a connection still silent, the revoke is never answered.
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = reg.Deregister(dctx)
	})
	in := Instance{Service: fmt.Sprintf("silent-reg-%d", time.Now().UnixNano()), ID: "a", Addr: "127.0.0.1:1"}
	if err := reg.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	old := reg.Lease()

	proxy.Silence()
	direct := etcdClient(t, eps)
	listed := func() clientv3.LeaseID {
		resp, err := direct.Get(ctx, in.key())
		if err != nil || len(resp.Kvs) != 1 {
			return 0
		}
		return clientv3.LeaseID(resp.Kvs[0].Lease)
	}
	if _, ok := eventually(3*(EtcdKeepAliveTime+EtcdKeepAliveTimeout), func() bool {
		lease := listed()
		return lease != 0 && lease != old && lease == reg.Lease()
	}); !ok {
		t.Fatalf("not registered again after the connection went silent: listed under %x, registry's lease %x (old %x)",
			listed(), reg.Lease(), old)
	}
}

// silencingClient returns a client made from EtcdConfig that reaches the shared etcd (eps) through proxy.
func silencingClient(t *testing.T) (*clientv3.Client, *testenv.SilentProxy, []string) {
	t.Helper()
	eps := testenv.Etcd(t)
	proxy := testenv.SilencingProxy(t, eps[0])
	cli, err := clientv3.New(EtcdConfig([]string{proxy.Addr()}, 2*time.Second, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli, proxy, eps
}
