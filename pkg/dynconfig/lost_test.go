package dynconfig

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/internal/etcdwatch/headertest"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A watch ended because etcd lost its log is logged with the cause etcdwatch found, another cluster id here (the
// shared etcd's second probe answer rewritten), so the warning cannot name a cause the probe did not find.
func TestLostWatchLogsItsCause(t *testing.T) {
	cli := etcdClient(t)
	key := Key(fmt.Sprintf("test-lost-%d", time.Now().UnixNano()))
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), key) })
	if _, err := cli.Put(t.Context(), key, `{"per_ip": 2}`); err != nil {
		t.Fatal(err)
	}
	read, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	cli.KV = headertest.Rewrite(cli.KV, headertest.AsItIs, headertest.OtherCluster)
	var logs testenv.LogBuffer
	v := &Value[limits]{key: key, initial: limits{PerIP: 1}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	v.cur.Store(&v.initial)
	probe, ended := make(chan time.Time), make(chan struct{})
	var byProbe bool
	go func() {
		defer close(ended)
		byProbe = v.follow(t.Context(), cli, read.Header.Revision+1, read, probe, 5*time.Second)
	}()
	headertest.Ticks(t, probe, 2, ended)
	if !byProbe {
		t.Fatal("follow said no probe ended the watch")
	}
	if !strings.Contains(logs.String(), `msg="dynconfig: etcd lost its log`) ||
		!strings.Contains(logs.String(), `cause="cluster id changed from `) {
		t.Fatalf("no warning naming the cluster id among:\n%s", logs.String())
	}
}
