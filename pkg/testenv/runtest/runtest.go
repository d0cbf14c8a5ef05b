// Package runtest checks a service run the way its main runs it: registered in discovery, serving, and gone from
// discovery after shutdown. Every service's tests use it, so it needs only what every service links already (the etcd
// client); svctest, which needs JetStream and kafka-go, builds on it.
package runtest

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// Eventually polls cond every 50 ms until it holds, failing t with what it waited for once within has passed. Work a
// service does in the background (consumers, relays, registration) is only observable this way.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// RegistersServesAndDeregisters checks a service run the way main runs it: run(ctx) must register an instance of
// service with version in etcd under a lease (so it vanishes if the process dies) within 10 s, answer /readyz 200 at
// the registered address within 10 s more (order and payment register before they are ready), return nil within 15 s of
// ctx being cancelled, and be gone from etcd by then. version should be unique to the test, since instances of other
// tests share the etcd server.
func RegistersServesAndDeregisters(t testing.TB, service, version string, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()

	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatalf("svctest: etcd client: %v", err)
	}
	defer cli.Close()
	mine := func() (discovery.Instance, bool) {
		resp, err := cli.Get(context.Background(), discovery.Prefix+service+"/", clientv3.WithPrefix())
		if err != nil {
			return discovery.Instance{}, false
		}
		for _, kv := range resp.Kvs {
			var in discovery.Instance
			if json.Unmarshal(kv.Value, &in) == nil && in.Version == version {
				if kv.Lease == 0 {
					t.Fatalf("instance %s registered without a lease", kv.Key)
				}
				return in, true
			}
		}
		return discovery.Instance{}, false
	}
	var in discovery.Instance
	Eventually(t, 10*time.Second, "registration in etcd", func() (ok bool) { in, ok = mine(); return ok })
	Eventually(t, 10*time.Second, "/readyz 200 at the registered address", func() bool {
		resp, err := http.Get("http://" + in.Addr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if _, ok := mine(); ok {
		t.Fatal("still registered after shutdown")
	}
}
