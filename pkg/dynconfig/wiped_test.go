package dynconfig

import (
	"log/slog"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// TestWatchFollowsEtcdRestartedWithoutItsData: etcd comes back without its data (a member replaced, a volume lost, a
// snapshot restore) and its revision starts over below the one the watch resumes from. etcd holds such a watch and
// sends nothing, so the value stayed at the lost document and no later write applied, with nothing logged. Now the
// watch notices the revision went back and reads the key again. Written past the old revision before a probe looks,
// the new etcd's revision never reads lower, and the key, written at the revision the old one had it, has the same
// mod revision: the watch resumed there and nothing was read again. Now the probe finds the key's value differs.
func TestWatchFollowsEtcdRestartedWithoutItsData(t *testing.T) {
	for _, refilled := range []bool{false, true} {
		t.Run(map[bool]string{false: "below the old revision", true: "written past the old revision"}[refilled],
			func(t *testing.T) { watchAcrossAWipe(t, refilled) })
	}
}

func watchAcrossAWipe(t *testing.T, refilled bool) {
	ctx := t.Context()
	e := testenv.StartEtcd(t)
	connect := func() *clientv3.Client {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.Close() })
		return cli
	}
	cli := connect()
	key := Key("wiped")
	// The key is etcd's first write, as a config is written early in a cluster's life; its revision is the one the
	// new etcd gives its first write too. Then a revision the new etcd will not reach during the test.
	if _, err := cli.Put(ctx, key, `{"per_ip": 7}`); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := cli.Put(ctx, "/unrelated", "x"); err != nil {
			t.Fatal(err)
		}
	}
	logs := &testenv.LogBuffer{}
	v := &Value[limits]{key: key, initial: limits{PerIP: 1}, log: slog.New(slog.NewTextHandler(logs, nil)), probe: time.Second}
	v.cur.Store(&v.initial)
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	v.set(ctx, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	go v.watch(ctx, cli, resp.Header.Revision+1, resp)

	e.Stop()
	e.Wipe()
	e.Start()
	fresh := connect()
	if _, err := fresh.Put(ctx, key, `{"per_ip": 9}`); err != nil {
		t.Fatal(err)
	}
	for rev := int64(0); refilled && rev <= resp.Header.Revision+5; {
		put, err := fresh.Put(ctx, "/unrelated", "x")
		if err != nil {
			t.Fatal(err)
		}
		rev = put.Header.Revision
	}
	deadline := time.Now().Add(30 * time.Second)
	for v.Load().PerIP != 9 {
		if time.Now().After(deadline) {
			t.Fatalf("after etcd restarted without its data the value is %+v, want per_ip 9 written since; logs:\n%s", v.Load(), logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
