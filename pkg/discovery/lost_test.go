package discovery

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/shanhai-dev/shanhai/pkg/internal/etcdwatch/headertest"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A watch ended because etcd lost its log is logged with the cause etcdwatch found. The warning named the raft term
// whatever it was, though another cluster id (what the shared etcd's second probe answers here) ends a watch too.
func TestLostWatchLogsItsCause(t *testing.T) {
	cli := etcdClient(t, testenv.Etcd(t))
	cli.KV = headertest.Rewrite(cli.KV, headertest.AsItIs, headertest.OtherCluster)
	var logs testenv.LogBuffer
	r := &EtcdResolver{cli: cli, log: slog.New(slog.NewTextHandler(&logs, nil)), probe: 5 * time.Second,
		done: make(chan struct{})}
	listed, err := r.list(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	probe, ended := make(chan time.Time), make(chan struct{})
	go func() {
		defer close(ended)
		r.follow(t.Context(), listed.Header.Revision+1, listed, probe)
	}()
	headertest.Ticks(t, probe, 2, ended)
	if !strings.Contains(logs.String(), `msg="discovery: etcd lost its log`) ||
		!strings.Contains(logs.String(), `cause="cluster id changed from `) {
		t.Fatalf("no warning naming the cluster id among:\n%s", logs.String())
	}
}
