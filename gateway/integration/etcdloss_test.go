package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestEtcdLostKeepsTheLastKnownInstances: with discovery's etcd gone after
// the start (a private etcd, killed: the shared one must never be), the
// gateway keeps routing to the instances it last knew, also past the etcd
// client's check of a silent connection (a ping every 10 s, replaced after
// 5 s without an answer), and follows etcd again once it is back.
func TestEtcdLostKeepsTheLastKnownInstances(t *testing.T) {
	w := newWorld(t)
	own := testenv.StartEtcd(t)
	shared := w.etcd
	w.etcd = []string{own.Endpoint()}
	// Before own's Stop and newWorld's cleanup, which deletes the dynamic
	// key on w.etcd: on the killed etcd that Delete would wait for good.
	t.Cleanup(func() { w.etcd = shared })
	w.startUpstream("a", "v1")
	g := w.startGateway()
	tok := map[string]string{"Authorization": "Bearer " + w.token("etcd-loss")}
	eventually(t, 2*time.Second, "routed", func() bool {
		return w.do(g, "GET", "/api/v1/orders", tok, nil).Echo.Instance == "a"
	})

	own.Stop()
	for end := time.Now().Add(17 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if r := w.do(g, "GET", "/api/v1/orders", tok, nil); r.Status != 200 || r.Echo.Instance != "a" {
			t.Fatalf("with etcd down: %d from %q %s", r.Status, r.Echo.Instance, r.Body)
		}
	}

	own.Start()
	w.startUpstream("b", "v1")
	eventually(t, 15*time.Second, "instance registered after etcd came back routed", func() bool {
		return w.do(g, "GET", "/api/v1/orders", tok, nil).Echo.Instance == "b"
	})
}

// TestEtcdDownAtStartStopsTheGateway: a gateway whose etcd never answers
// does not come up routing nothing (every request a 503): it gives up with
// an error naming discovery after pkg/discovery's StartTimeout (10 s).
func TestEtcdDownAtStartStopsTheGateway(t *testing.T) {
	w := newWorld(t)
	out, err := exitWithin(t, w.gatewayCommand(freeAddr(t), freeAddr(t), "ETCD_ENDPOINTS="+testenv.ClosedPort(t)), 30*time.Second)
	if err == nil || !strings.Contains(out, "discovery") {
		t.Fatalf("gateway without etcd: %v, want a failed start naming discovery:\n%s", err, out)
	}
}
