package dynconfig

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch fails when etcd gives no answer at start, as its doc says, instead
// of waiting as long as its ctx, which is the watch's whole lifetime (payment
// passes one that never ends): with ETCD_ENDPOINTS naming nothing that
// answers, a binary hung at start, silently, never listening. The etcd
// client dials lazily, so its DialTimeout does not bound the first read.
func TestWatchFailsWhenEtcdDoesNotAnswerAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	got := make(chan error, 1)
	go func() {
		_, err := Watch(context.Background(), cli, "start-test", limits{})
		got <- err
	}()
	select {
	case err := <-got:
		if err == nil || !strings.Contains(err.Error(), "no answer") {
			t.Fatalf("Watch with etcd unreachable = %v, want an error saying etcd did not answer", err)
		}
	case <-time.After(StartTimeout + 30*time.Second):
		t.Fatalf("Watch still waiting for an unreachable etcd %v past StartTimeout", 30*time.Second)
	}
}
