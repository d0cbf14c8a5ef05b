package etcdwatch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/shanhai-dev/shanhai/pkg/testenv"
)

// The probe's check that etcd still holds what the watch showed must hold on the etcd the watch follows, whatever is
// written: puts, deletes, several keys at one revision (a transaction), a compaction past the last revision seen (the
// check says nothing then), a range emptied. A false "replaced" costs a re-list and a warning on every probe. Each
// probe tick is sent by hand; the next send returns only once Follow took it, so the one before has been answered.
// And no probe reads the range's keys: it asked for the key written last by sorting the range (limit 1), for which
// etcd reads every key and value of the range and sorts them (a sort lifts the limit), every probe of every watcher.
func TestFollowKeepsAWatchWhoseEtcdHoldsWhatItShowed(t *testing.T) {
	cli := ownEtcdClient(t)
	ctx := t.Context()
	const prefix = "/held-test/"
	for _, k := range []string{"a", "b"} {
		if _, err := cli.Put(ctx, prefix+k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	start, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	reads := &rangeReads{KV: cli.KV}
	cli.KV = reads
	probe := make(chan time.Time)
	seen := make(chan int64, 16)
	ended := make(chan End, 1)
	go func() {
		ended <- Follow(ctx, cli, prefix, start.Header.Revision+1, start, probe, time.Second, func(resp clientv3.WatchResponse) {
			seen <- resp.Header.Revision
		}, clientv3.WithPrefix())
	}()
	tick := func(when string) {
		t.Helper()
		for range 2 {
			select {
			case probe <- time.Now():
			case end := <-ended:
				t.Fatalf("%s: Follow ended %+v on the etcd it follows", when, end)
			}
		}
	}
	step := func(when string, op func() (int64, error)) {
		t.Helper()
		rev, err := op()
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		for got := int64(0); got < rev; {
			select {
			case got = <-seen:
			case <-time.After(10 * time.Second):
				t.Fatalf("%s: the watch never showed revision %d", when, rev)
			}
		}
		tick(when)
	}
	put := func(k string) func() (int64, error) {
		return func() (int64, error) {
			resp, err := cli.Put(ctx, prefix+k, "v")
			if err != nil {
				return 0, err
			}
			return resp.Header.Revision, nil
		}
	}
	del := func(k string, opts ...clientv3.OpOption) func() (int64, error) {
		return func() (int64, error) {
			resp, err := cli.Delete(ctx, prefix+k, opts...)
			if err != nil {
				return 0, err
			}
			return resp.Header.Revision, nil
		}
	}

	tick("from the start")
	step("a key added", put("c"))
	step("the key last written deleted", del("c"))
	step("a key rewritten", put("a"))
	step("two keys written at one revision", func() (int64, error) {
		resp, err := cli.Txn(ctx).Then(clientv3.OpPut(prefix+"d", "v"), clientv3.OpPut(prefix+"b", "w")).Commit()
		if err != nil {
			return 0, err
		}
		return resp.Header.Revision, nil
	})
	other, err := cli.Put(ctx, "/held-test-elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, other.Header.Revision); err != nil {
		t.Fatal(err)
	}
	tick("compacted past the last revision seen")
	step("after the compaction", put("e"))
	step("the range emptied", del("", clientv3.WithPrefix()))
	if got := reads.list(); len(got) > 0 {
		t.Errorf("the probes read the range's keys, not counts and single keys: %v", got)
	}
}

// rangeReads records the Gets made through it that read a range's keys (not only their count).
type rangeReads struct {
	clientv3.KV
	mu     sync.Mutex
	ranges []string
}

func (r *rangeReads) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if op := clientv3.OpGet(key, opts...); len(op.RangeBytes()) > 0 && !op.IsCountOnly() {
		r.mu.Lock()
		r.ranges = append(r.ranges, fmt.Sprintf("%q..%q at %d (sorted %v, limit %d)", key, op.RangeBytes(), op.Rev(),
			op.IsSortSet(), op.Limit()))
		r.mu.Unlock()
	}
	return r.KV.Get(ctx, key, opts...)
}

func (r *rangeReads) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ranges
}

// ownEtcdClient is a client of an etcd of the test's own (testenv.StartEtcd), closed when the test ends.
func ownEtcdClient(t *testing.T) *clientv3.Client {
	t.Helper()
	_, cli := ownEtcd(t)
	return cli
}

// ownEtcd is an etcd of the test's own, to stop, wipe and start again, and a client of it closed when the test ends.
func ownEtcd(t *testing.T) (*testenv.OwnEtcd, *clientv3.Client) {
	t.Helper()
	e := testenv.StartEtcd(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Endpoint()}, DialTimeout: 5 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return e, cli
}
