package runtest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/pkg/testenv/runtest"
	"github.com/shanhai-dev/shanhai/pkg/testenv/svctest"
)

func TestEventuallyFailsWithWhatItWaitedFor(t *testing.T) {
	failed := testenv.Failure(t, func(tb testing.TB) {
		runtest.Eventually(tb, 100*time.Millisecond, "the impossible", func() bool { return false })
	})
	if !strings.Contains(failed, "the impossible") {
		t.Fatalf("failure = %q, want it to name what it waited for", failed)
	}
	calls := 0
	runtest.Eventually(t, time.Second, "the third try", func() bool { calls++; return calls == 3 })
	if calls != 3 {
		t.Fatalf("cond called %d times after it held", calls)
	}
}

// fakeService registers an instance of service in etcd whose /readyz answers 200, serves until ctx ends and then
// deregisters unless forget is set.
func fakeService(t *testing.T, service, version string, forget bool) func(context.Context) error {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	reg := discovery.NewEtcdRegistry(cli, 10*time.Second)
	t.Cleanup(func() { _ = reg.Deregister(context.Background()) })
	return func(ctx context.Context) error {
		in := discovery.Instance{ID: svctest.Random(4), Service: service, Addr: strings.TrimPrefix(srv.URL, "http://"), Version: version}
		// The keep-alives live as long as the context Register gets, so, as in
		// the services, that is not the serving context.
		if err := reg.Register(context.WithoutCancel(ctx), in); err != nil {
			return err
		}
		<-ctx.Done()
		if forget {
			return nil
		}
		return reg.Deregister(context.Background())
	}
}

func TestRegistersServesAndDeregisters(t *testing.T) {
	service, version := "runtest-"+svctest.Random(4), "v-"+svctest.Random(4)
	runtest.RegistersServesAndDeregisters(t, service, version, fakeService(t, service, version, false))

	failed := testenv.Failure(t, func(tb testing.TB) {
		runtest.RegistersServesAndDeregisters(tb, service, version, fakeService(t, service, version, true))
	})
	if !strings.Contains(failed, "still registered after shutdown") {
		t.Fatalf("a service that stays registered: failure = %q", failed)
	}

	// An instance written without a lease would outlive a crashed process.
	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	key := discovery.Prefix + service + "/no-lease"
	// Deferred, not a t.Cleanup: cleanups run after the deferred Close above, and a Delete on a closed client left the
	// key in the shared etcd, one more after every run, for every resolver to list.
	defer func() { _, _ = cli.Delete(context.Background(), key) }()
	failed = testenv.Failure(t, func(tb testing.TB) {
		runtest.RegistersServesAndDeregisters(tb, service, "no-lease", func(ctx context.Context) error {
			_, err := cli.Put(ctx, key, `{"id":"no-lease","service":"`+service+`","addr":"127.0.0.1:1","version":"no-lease"}`)
			<-ctx.Done()
			return err
		})
	})
	if !strings.Contains(failed, "without a lease") {
		t.Fatalf("an instance without a lease: failure = %q", failed)
	}
}
