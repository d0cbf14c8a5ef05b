package dynconfig

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
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
// And when the read after that failed once, the watch went on from the revision it had reached without a read: its
// probe took the new etcd's key as the one the watch showed, and the value written there was never applied. Now the
// watch goes on only from a read. (The watch must have shown a write for that: otherwise it goes on from its first
// read, which still tells.) And when the watch ended on an error (a lost leader, a compaction) with no probe having
// looked, the read again compared the key's mod revision only: the new etcd's key, written at the revision the old one
// had it, was taken for the applied document, and a bad document's revision for the one already reported. Now the
// read again compares the document too.
func TestWatchFollowsEtcdRestartedWithoutItsData(t *testing.T) {
	for _, c := range []wipeCase{
		{name: "below the old revision"},
		{name: "written past the old revision", refilled: true},
		{name: "written past the old revision, the read again failing once", refilled: true, rereadErr: true},
		{name: "the watch ending on an error, no probe", cut: true},
		{name: "the watch ending on an error, no probe, a bad document before", cut: true, firstBad: true},
	} {
		t.Run(c.name, func(t *testing.T) { watchAcrossAWipe(t, c) })
	}
}

// wipeCase is one way etcd is wiped under a watch. refilled: written past the watch's revision; rereadErr: the read
// again after the watch ends fails once; cut: the probe does not look, and the watch ends on an error after the wipe
// (what a lost leader or a compaction does); firstBad: the key's first document is bad.
type wipeCase struct {
	name                               string
	refilled, rereadErr, cut, firstBad bool
}

// cutWatcher ends the next watch's channel with an error response (etcd's ErrCompacted) once cut is closed.
type cutWatcher struct {
	clientv3.Watcher
	cut chan struct{}
}

func (w *cutWatcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	in, out := w.Watcher.Watch(ctx, key, opts...), make(chan clientv3.WatchResponse)
	go func() {
		defer close(out)
		for {
			select {
			case resp, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- resp:
				case <-ctx.Done():
					return
				}
			case <-w.cut:
				select {
				case out <- clientv3.WatchResponse{CompactRevision: 1}:
				case <-ctx.Done():
				}
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// failingReread fails the first plain read of a key (the watch's read again; the probe's reads are at a revision or
// count-only) once armed.
type failingReread struct {
	clientv3.KV
	armed atomic.Bool
}

func (f *failingReread) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if op := clientv3.OpGet(key, opts...); op.Rev() == 0 && !op.IsCountOnly() && f.armed.CompareAndSwap(true, false) {
		return nil, errors.New("injected: the read again fails once")
	}
	return f.KV.Get(ctx, key, opts...)
}

func watchAcrossAWipe(t *testing.T, c wipeCase) {
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
	reads := &failingReread{KV: cli.KV}
	cli.KV = reads
	watches := &cutWatcher{Watcher: cli.Watcher, cut: make(chan struct{})}
	cli.Watcher = watches
	first := `{"per_ip": 7}`
	if c.firstBad {
		first = `{"per_ip": -1}`
	}
	key := Key("wiped")
	// The key is etcd's first write, as a config is written early in a cluster's life; its revision is the one the
	// new etcd gives its first write too. Then a revision the new etcd will not reach during the test.
	if _, err := cli.Put(ctx, key, first); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		if _, err := cli.Put(ctx, "/unrelated", "x"); err != nil {
			t.Fatal(err)
		}
	}
	logs := &testenv.LogBuffer{}
	v := &Value[limits]{key: key, initial: limits{PerIP: 1}, log: slog.New(slog.NewTextHandler(logs, nil)), probe: time.Second}
	if c.cut {
		v.probe = time.Hour
	}
	v.cur.Store(&v.initial)
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	v.set(ctx, resp.Kvs[0].Value, resp.Kvs[0].ModRevision)
	go v.watch(ctx, cli, resp.Header.Revision+1, resp)
	if c.rereadErr {
		if _, err := cli.Put(ctx, key, `{"per_ip": 8}`); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); v.Load().PerIP != 8; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the watch never applied per_ip 8; logs:\n%s", logs)
			}
		}
		reads.armed.Store(true)
	}

	e.Stop()
	e.Wipe()
	e.Start()
	fresh := connect()
	put, err := fresh.Put(ctx, key, `{"per_ip": 9}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.cut {
		if put.Header.Revision != resp.Kvs[0].ModRevision {
			t.Fatalf("the new etcd wrote the key at revision %d, the old one at %d", put.Header.Revision, resp.Kvs[0].ModRevision)
		}
		close(watches.cut)
	}
	for rev := int64(0); c.refilled && rev <= resp.Header.Revision+5; {
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
	if reads.armed.Load() {
		t.Fatalf("the read again was never made to fail; logs:\n%s", logs)
	}
}
