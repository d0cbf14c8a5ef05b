package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

func TestEtcdRegisterResolveDeregister(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t, testenv.Etcd(t))
	svc := uniqueService(t)
	res, err := NewEtcdResolver(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewEtcdRegistry(cli, 5*time.Second)
	in := Instance{Service: svc, Addr: "10.1.2.3:8082", Version: "v1.2.0", Zone: "z1", Weight: 3, Meta: map[string]string{"canary": "true"}}
	if err := reg.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctx, Instance{Service: svc, ID: "second", Addr: "10.1.2.4:8082"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances(svc)) == 2 }); !ok {
		t.Fatalf("resolver never saw both instances: %+v", res.Instances(svc))
	}
	var got Instance
	for _, x := range res.Instances(svc) {
		if x.ID != "second" {
			got = x
		}
	}
	if got.ID == "" || got.Addr != in.Addr || got.Version != "v1.2.0" || got.Zone != "z1" || got.Weight != 3 || got.Meta["canary"] != "true" {
		t.Fatalf("metadata lost in the round trip: %+v", got)
	}
	// A resolver started now lists what is already there.
	late, err := NewEtcdResolver(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(late.Instances(svc)); n != 2 {
		t.Fatalf("new resolver listed %d instances, want 2", n)
	}

	// The malformed values below have no lease: without this they stayed in
	// the shared etcd, one more after every run, for every resolver to list.
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), Prefix+svc+"/", clientv3.WithPrefix()) })
	// A malformed value under the prefix is skipped, not fatal.
	if _, err := cli.Put(ctx, Prefix+svc+"/junk", "{not json"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register(ctx, Instance{Service: svc, ID: "third", Addr: "10.1.2.5:8082"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances(svc)) == 3 }); !ok {
		t.Fatalf("after a malformed value: %+v", res.Instances(svc))
	}
	if _, err := cli.Delete(ctx, Prefix+svc+"/junk"); err != nil {
		t.Fatal(err)
	}
	// An instance whose key is overwritten with junk is gone, as it would
	// be for a resolver that lists now: its old address is not kept.
	if _, err := cli.Put(ctx, Prefix+svc+"/third", "{not json"); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances(svc)) == 2 }); !ok {
		t.Fatalf("instance overwritten with junk still listed: %+v", res.Instances(svc))
	}

	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if took, ok := eventually(2*time.Second, func() bool { return len(res.Instances(svc)) == 0 }); !ok {
		t.Fatalf("instances still listed %v after deregister: %+v", took, res.Instances(svc))
	}
	if err := reg.Deregister(ctx); err != nil {
		t.Fatalf("second Deregister: %v", err)
	}
}

// TestInstanceVanishesWithinTTLAfterKill simulates a crash: the registrar's
// client is closed without revoking, so keep-alives just stop.
func TestInstanceVanishesWithinTTLAfterKill(t *testing.T) {
	ctx := t.Context()
	eps := testenv.Etcd(t)
	watcher := etcdClient(t, eps)
	victim := etcdClient(t, eps)
	svc := uniqueService(t)
	res, err := NewEtcdResolver(ctx, watcher)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewEtcdRegistry(victim, 2*time.Second)
	if err := reg.Register(ctx, Instance{Service: svc, Addr: "10.0.0.9:1"}); err != nil {
		t.Fatal(err)
	}
	ttl := reg.TTL()
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances(svc)) == 1 }); !ok {
		t.Fatal("resolver never saw the instance")
	}
	// Keep-alives must hold the key well past one TTL while the process lives.
	time.Sleep(ttl + 500*time.Millisecond)
	if len(res.Instances(svc)) != 1 {
		t.Fatal("instance vanished while its keep-alives were running")
	}

	_ = victim.Close() // the "kill"
	took, ok := eventually(ttl+time.Second, func() bool { return len(res.Instances(svc)) == 0 })
	if !ok {
		t.Fatalf("instance still listed %v after the kill; lease TTL %v + 1s allowed", took, ttl)
	}
	t.Logf("vanished %v after the kill (lease TTL %v)", took.Round(10*time.Millisecond), ttl)
}

// TestRegistryComesBackAfterLeaseLoss: if the lease disappears under a live
// process (it lapsed while etcd was away), the registry registers again.
func TestRegistryComesBackAfterLeaseLoss(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t, testenv.Etcd(t))
	svc := uniqueService(t)
	res, err := NewEtcdResolver(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewEtcdRegistry(cli, 3*time.Second)
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	if err := reg.Register(ctx, Instance{Service: svc, Addr: "10.0.0.7:1"}); err != nil {
		t.Fatal(err)
	}
	old := reg.Lease()
	if _, err := cli.Revoke(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool {
		return reg.Lease() != old && len(res.Instances(svc)) == 1
	}); !ok {
		t.Fatalf("not re-registered after lease loss: lease %x (old %x), instances %+v", reg.Lease(), old, res.Instances(svc))
	}
}

// TestResolverCacheSurvivesEtcdStop runs its own etcd, stops it, and checks
// the resolver keeps serving the last known instances, then follows changes
// again once etcd is back.
func TestResolverCacheSurvivesEtcdStop(t *testing.T) {
	ctx := t.Context()
	e := testenv.StartEtcd(t)
	cli := etcdClient(t, []string{e.Endpoint()})
	res, err := NewEtcdResolver(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	reg := NewEtcdRegistry(cli, 2*time.Second)
	if err := reg.Register(ctx, Instance{Service: "order", ID: "a", Addr: "10.0.0.1:8082"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances("order")) == 1 }); !ok {
		t.Fatal("resolver never saw the instance")
	}

	e.Stop()
	// Longer than the lease TTL: had the cache been tied to etcd's view it
	// would have emptied by now.
	deadline := time.Now().Add(2*reg.TTL() + time.Second)
	for time.Now().Before(deadline) {
		if got := res.Instances("order"); len(got) != 1 || got[0].Addr != "10.0.0.1:8082" {
			t.Fatalf("with etcd down the resolver lost its cache: %+v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	e.Start() // same data dir and ports
	other := etcdClient(t, []string{e.Endpoint()})
	if _, err := other.Put(ctx, Prefix+"order/b", `{"addr":"10.0.0.2:8082"}`); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(10*time.Second, func() bool {
		for _, in := range res.Instances("order") {
			if in.ID == "b" && in.Addr == "10.0.0.2:8082" {
				return true
			}
		}
		return false
	}); !ok {
		t.Fatalf("resolver did not resume watching after etcd came back: %+v", res.Instances("order"))
	}
}

// Grant takes the lease ahead of Register, which then writes under it.
func TestEtcdGrantAheadOfRegister(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t, testenv.Etcd(t))
	reg := NewEtcdRegistry(cli, 5*time.Second)
	if err := reg.Grant(ctx); err != nil {
		t.Fatal(err)
	}
	lease := reg.lease
	if err := reg.Grant(ctx); err != nil || reg.lease != lease || lease == 0 {
		t.Fatalf("second Grant: err %v, lease %x then %x; want the same lease", err, lease, reg.lease)
	}
	in := Instance{Service: uniqueService(t), ID: "granted", Addr: "10.1.2.3:8082"}
	if err := reg.Register(ctx, in); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, in.key())
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get %s: %v, %d keys", in.key(), err, len(resp.Kvs))
	}
	if got := clientv3.LeaseID(resp.Kvs[0].Lease); got != lease {
		t.Fatalf("registered under lease %x, want the granted %x", got, lease)
	}
	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
}

// Deregister is the first shutdown step, bounded by its context. With etcd
// down after the lease lapsed, the keep-alive loop's re-registration sits in
// a Grant that only etcd's return would end; Deregister used to wait for the
// lock that Grant was made under, past its deadline, so the drain and the
// telemetry flush after it never ran.
func TestDeregisterReturnsByItsDeadlineWhileEtcdIsDown(t *testing.T) {
	ctx := t.Context()
	e := testenv.StartEtcd(t)
	cli := etcdClient(t, []string{e.Endpoint()})
	var logs testenv.LogBuffer
	reg := NewEtcdRegistry(cli, 2*time.Second).WithLogger(slog.New(slog.NewTextHandler(&logs, nil)))
	if err := reg.Register(ctx, Instance{Service: "dereg", ID: "a", Addr: "10.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	e.Stop()
	// The client gives the lease up once no keep-alive answer came for its
	// TTL; the loop then starts re-registering.
	if _, ok := eventually(4*reg.TTL()+5*time.Second, func() bool {
		return strings.Contains(logs.String(), "lease lost")
	}); !ok {
		t.Fatalf("keep-alive loop never noticed the lost lease:\n%s", logs.String())
	}
	time.Sleep(time.Second) // past the first back-off: the re-registration's Grant is waiting on etcd

	dctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- reg.Deregister(dctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Deregister with etcd down reported the lease revoked")
		}
	case <-time.After(30 * time.Second): // a hang guard, far beyond the 1s context
		t.Fatal("Deregister ignored its context while etcd was down: shutdown hangs")
	}
}

// The resolver's goroutine stops when its etcd client is closed, not only
// when its ctx ends: the gateway closes its client when Run returns, which
// may be before ctx ends (a bad ROUTES value, a listen error) in a process
// that lives on (cmd/shanhai).
func TestResolverStopsWhenItsClientCloses(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	res, err := NewEtcdResolver(t.Context(), cli)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-res.Done():
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("etcd client closed, ctx alive: the resolver's watch goroutine still runs (Done not closed)")
	}
}

// A Deregister that starts while another writer is in flight is ordered after
// it: once both return, no key is left, no lease is held and no keep-alive
// loop runs. Deregister used to look for the loop only before waiting for the
// writer's slot, so it missed the one a first Register (or Grant) in flight
// started: it revoked the lease while that loop ran on, which then logged
// "lease lost" and registered the instance again for good.
func TestDeregisterDuringAWriteLeavesNothing(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t, testenv.Etcd(t))
	svc := uniqueService(t)
	logs := &testenv.LogBuffer{} // a fresh one for each registry below
	cases := []struct {
		name string
		// write starts the writer Deregister races with: inFlight reports
		// whether it still works, wait returns its error.
		write func(t *testing.T, reg *EtcdRegistry, in Instance) (inFlight func() bool, wait func() error)
	}{
		{"first Register", func(t *testing.T, reg *EtcdRegistry, in Instance) (func() bool, func() error) {
			return goWrite(func() error { return reg.Register(ctx, in) })
		}},
		{"Grant", func(t *testing.T, reg *EtcdRegistry, in Instance) (func() bool, func() error) {
			return goWrite(func() error { return reg.Grant(ctx) })
		}},
		{"Register after Grant", func(t *testing.T, reg *EtcdRegistry, in Instance) (func() bool, func() error) {
			if err := reg.Grant(ctx); err != nil {
				t.Fatal(err)
			}
			return goWrite(func() error { return reg.Register(ctx, in) })
		}},
		{"re-registration after lease loss", func(t *testing.T, reg *EtcdRegistry, in Instance) (func() bool, func() error) {
			if err := reg.Register(ctx, in); err != nil {
				t.Fatal(err)
			}
			old := reg.Lease()
			if _, err := cli.Revoke(ctx, old); err != nil {
				t.Fatal(err)
			}
			// The re-registration follows the log line after a 100 ms
			// back-off; waiting for the line keeps the caller's busy wait short.
			if _, ok := eventually(10*time.Second, func() bool { return strings.Contains(logs.String(), "lease lost") }); !ok {
				t.Fatalf("keep-alive loop never noticed the revoked lease:\n%s", logs.String())
			}
			// In flight until the loop has written under a new lease.
			return func() bool { return reg.Lease() == old }, func() error { return nil }
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i := range 8 {
				logs = &testenv.LogBuffer{}
				reg := NewEtcdRegistry(cli, 2*time.Second).WithLogger(slog.New(slog.NewTextHandler(logs, nil)))
				t.Cleanup(func() { _ = reg.Deregister(context.Background()) }) // a leaked loop
				in := Instance{Service: svc, ID: fmt.Sprintf("%s-%d", strings.ReplaceAll(c.name, " ", "-"), i), Addr: "10.0.0.1:1"}
				inFlight, wait := c.write(t, reg, in)
				// Deregister once the writer holds the slot (its etcd calls
				// are on the wire), or once it is done if that was missed.
				for inFlight() && len(reg.writing) == 0 {
					runtime.Gosched()
				}
				err := reg.Deregister(ctx)
				if werr := wait(); werr != nil {
					t.Fatalf("iteration %d: %s: %v", i, c.name, werr)
				}
				if err != nil {
					t.Fatalf("iteration %d: Deregister: %v", i, err)
				}
				reg.mu.Lock()
				lease, loop := reg.lease, reg.cancel != nil || reg.done != nil
				reg.mu.Unlock()
				if lease != 0 || loop {
					t.Errorf("iteration %d: after Deregister returned: lease %x (want 0), keep-alive loop running %v (want false)", i, int64(lease), loop)
				}
				resp, err := cli.Get(ctx, in.key())
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Kvs) != 0 {
					t.Errorf("iteration %d: %s still registered after Deregister returned", i, in.key())
				}
			}
		})
	}
}

// goWrite runs write in a goroutine; inFlight reports whether it still runs,
// wait returns its error.
func goWrite(write func() error) (inFlight func() bool, wait func() error) {
	done := make(chan error, 1)
	go func() { done <- write() }()
	return func() bool { return len(done) == 0 }, func() error { return <-done }
}

// An instance in etcd whose address callers cannot dial (written by hand or
// by an older binary that did not check it) is skipped like a malformed
// one, not handed to the balancers for every call to it to fail.
func TestResolverSkipsAnUndialableAddr(t *testing.T) {
	ctx := t.Context()
	cli := etcdClient(t, testenv.Etcd(t))
	svc := uniqueService(t)
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), Prefix+svc+"/", clientv3.WithPrefix()) })
	if _, err := cli.Put(ctx, Prefix+svc+"/listed", `{"addr":"10.0.0.5"}`); err != nil {
		t.Fatal(err)
	}
	res, err := NewEtcdResolver(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, Prefix+svc+"/watched", `{"addr":"http://10.0.0.6:8082"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, Prefix+svc+"/good", `{"addr":"10.0.0.7:8082"}`); err != nil {
		t.Fatal(err)
	}
	if _, ok := eventually(5*time.Second, func() bool { return len(res.Instances(svc)) > 0 && res.Instances(svc)[0].ID == "good" }); !ok {
		t.Fatalf("resolver lists %+v, want the good instance only", res.Instances(svc))
	}
	if got := res.Instances(svc); len(got) != 1 {
		t.Fatalf("resolver lists %+v, want the good instance only", got)
	}
}

// NewEtcdResolver fails when etcd gives no answer at start, as its doc says,
// instead of waiting as long as its ctx, which is the watch's lifetime: the
// gateway hung at start, silently and never listening, with ETCD_ENDPOINTS
// naming nothing that answers. The etcd client dials lazily, so its
// DialTimeout does not bound the first read. Both a closed port and a
// listener that accepts and never answers are tried, as for the lease
// (pkg/server/discoverable).
func TestResolverFailsWhenEtcdDoesNotAnswerAtStart(t *testing.T) {
	for name, addr := range map[string]string{"closed port": testenv.ClosedPort(t), "silent listener": testenv.Hung(t)} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = cli.Close() })
			err = testenv.Within(t, StartTimeout+30*time.Second, "NewEtcdResolver with etcd at "+addr+" not answering", func() error {
				_, err := NewEtcdResolver(context.Background(), cli)
				return err
			})
			if err == nil || !strings.Contains(err.Error(), "no answer") {
				t.Fatalf("NewEtcdResolver with etcd at %s not answering = %v, want an error saying etcd did not answer", addr, err)
			}
		})
	}
}
