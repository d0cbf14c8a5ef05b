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
	eps := testenv.Etcd(t)
	proxy := testenv.SilencingProxy(t, eps[0])
	cli, err := clientv3.New(EtcdConfig([]string{proxy.Addr()}, 2*time.Second, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
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
