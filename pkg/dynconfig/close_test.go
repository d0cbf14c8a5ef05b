package dynconfig

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A watch whose ctx never ends (payment's lives as long as its client) stops
// when the client is closed, instead of re-reading a closed connection
// forever: a process hosting several services outlives each one's client.
func TestWatchEndsWhenTheClientCloses(t *testing.T) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	key := Key("close-test-" + t.Name())
	if _, err := Watch(context.Background(), cli, key, limits{PerIP: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch goroutine to start", watching)
	if err := cli.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the watch goroutine to end after the client closed", func() bool { return !watching() })
}

func watching() bool {
	buf := make([]byte, 1<<20)
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "/pkg/dynconfig.(*Value[") && strings.Contains(g, "]).watch(") {
			return true
		}
	}
	return false
}
