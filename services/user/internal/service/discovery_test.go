package service_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/discovery"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
	"github.com/shanhai-dev/shanhai/services/user/internal/service"
)

// Run registers the instance in etcd under a lease with the address it
// listens on, serves, and deregisters on shutdown.
func TestRunRegistersInEtcd(t *testing.T) {
	eps := testenv.Etcd(t)
	version := "test-" + uniqEmail()[1:11]
	h := newHarness(t, map[string]string{
		"ETCD_ENDPOINTS":  eps[0],
		"HTTP_ADDR":       "127.0.0.1:0",
		"SERVICE_VERSION": version,
	})
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.svc.Run(ctx) }()

	mine := func() *discovery.Instance {
		resp, err := cli.Get(t.Context(), discovery.Prefix+service.Name+"/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		for _, kv := range resp.Kvs {
			var in discovery.Instance
			if json.Unmarshal(kv.Value, &in) == nil && in.Version == version {
				if kv.Lease == 0 {
					t.Fatal("instance registered without a lease")
				}
				return &in
			}
		}
		return nil
	}
	var in *discovery.Instance
	for deadline := time.Now().Add(5 * time.Second); in == nil && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		in = mine()
	}
	if in == nil {
		t.Fatal("instance never appeared in etcd")
	}
	resp, err := http.Get("http://" + in.Addr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("registered address %s does not serve /readyz: %v", in.Addr, err)
	}
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no shutdown")
	}
	if mine() != nil {
		t.Fatal("instance still registered after shutdown")
	}
}
