package etcdwatch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/shanhai-dev/shanhai/pkg/freeport"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// A member cut off from the rest of its cluster keeps a watch open and sends nothing more: without
// clientv3.WithRequireLeader the resolver's and dynconfig's snapshots went stale there with no error, the probe's
// failing reads saying nothing either. The member left alone after the other two of three are killed is such a
// member; Follow must end on etcd's "no leader" error so that its caller lists or reads again (elsewhere).
func TestFollowEndsWhenItsMemberLosesTheLeader(t *testing.T) {
	members := startCluster(t, 3)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{members[0].client}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop()}) // its retries of the probe's reads on the leaderless member are expected
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx := t.Context()
	key := "/etcdwatch-test/leader"
	var put *clientv3.PutResponse
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		put, err = cli.Put(pctx, key, "v1")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the three-member cluster never took a write: %v", err)
		}
	}

	// A probe ticks too: it must not be what ends the watch (its read fails on a member without a leader).
	probe := time.NewTicker(200 * time.Millisecond)
	defer probe.Stop()
	seen := make(chan string, 16)
	ended := make(chan End, 1)
	go func() {
		ended <- Follow(ctx, cli, key, put.Header.Revision, nil, probe.C, 200*time.Millisecond, func(resp clientv3.WatchResponse) {
			for _, ev := range resp.Events {
				seen <- string(ev.Kv.Value)
			}
		})
	}()
	select {
	case v := <-seen:
		if v != "v1" {
			t.Fatalf("watch delivered %q, want v1", v)
		}
	case end := <-ended:
		t.Fatalf("Follow ended before the cluster lost anything: %+v", end)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch never delivered the write it started from")
	}

	members[1].kill()
	members[2].kill()
	// etcd ends a require-leader stream once its member has had no leader for three election timeouts (500 ms
	// each here, after the leader steps down for want of a quorum): about two seconds. The bound is far above that.
	select {
	case end := <-ended:
		if !errors.Is(end.Err, rpctypes.ErrNoLeader) {
			t.Fatalf("Follow ended with %+v, want etcd's %q error", end, rpctypes.ErrNoLeader)
		}
		if end.Next != put.Header.Revision+1 || !end.Progressed {
			t.Fatalf("Follow ended at %+v, want Next %d after one response", end, put.Header.Revision+1)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the watch stayed open and silent on a member without a leader")
	}
}

// member is one etcd process of a private cluster.
type member struct {
	cmd    *exec.Cmd
	client string // host:port
}

func (m *member) kill() {
	if m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
}

// startCluster starts n etcd members on free loopback ports, each with a data directory of its own, with short
// heartbeat and election timeouts (50 ms, 500 ms) so that a lost leader is noticed within seconds, and kills them
// when the test ends. It does not wait for them: a member is ready only once a quorum is up.
func startCluster(t *testing.T, n int) []*member {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd is needed for a private cluster: %v\n%s", err, testenv.Hint)
	}
	addrs, err := freeport.Addrs(2 * n)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var cluster []string
	for i := range n {
		cluster = append(cluster, fmt.Sprintf("m%d=http://%s", i, addrs[2*i+1]))
	}
	members := make([]*member, n)
	for i := range n {
		name, c, p := fmt.Sprintf("m%d", i), "http://"+addrs[2*i], "http://"+addrs[2*i+1]
		logf, err := os.Create(filepath.Join(dir, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", c, "--advertise-client-urls", c,
			"--listen-peer-urls", p, "--initial-advertise-peer-urls", p,
			"--initial-cluster", strings.Join(cluster, ","), "--initial-cluster-state", "new",
			"--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "error")
		cmd.Stdout, cmd.Stderr = logf, logf
		err = cmd.Start()
		_ = logf.Close()
		if err != nil {
			t.Fatalf("start etcd %s: %v", name, err)
		}
		members[i] = &member{cmd: cmd, client: addrs[2*i]}
		t.Cleanup(members[i].kill)
	}
	return members
}
