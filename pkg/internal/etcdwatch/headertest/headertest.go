// Package headertest rewrites the headers of etcd's answers to a watch's probes, for the tests of etcdwatch and of
// the packages that follow etcd through it: a lost log (another cluster id, a raft term gone back) is shown on the
// shared etcd without wiping it.
package headertest

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Rewrite returns kv with the header of each count-only read at etcd's current revision (a probe's first read;
// etcdwatch's held check counts at a revision) rewritten by the next of rewrites, while one is left.
func Rewrite(kv clientv3.KV, rewrites ...func(*etcdserverpb.ResponseHeader)) clientv3.KV {
	return &rewritten{KV: kv, next: rewrites}
}

// OtherCluster rewrites a header as an etcd bootstrapped again with another cluster token answers.
func OtherCluster(h *etcdserverpb.ResponseHeader) { h.ClusterId++ }

// AsItIs leaves a header as etcd sent it.
func AsItIs(*etcdserverpb.ResponseHeader) {}

type rewritten struct {
	clientv3.KV
	mu   sync.Mutex
	next []func(*etcdserverpb.ResponseHeader)
}

func (r *rewritten) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := r.KV.Get(ctx, key, opts...)
	if op := clientv3.OpGet(key, opts...); err != nil || !op.IsCountOnly() || op.Rev() != 0 {
		return resp, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.next) > 0 {
		r.next[0](resp.Header)
		r.next = r.next[1:]
	}
	return resp, err
}

// Ticks sends n ticks on probe, each taken once the probe before it has been answered, and then waits for ended to
// close: the watch must end on the n-th probe, not before nor never.
func Ticks(t testing.TB, probe chan<- time.Time, n int, ended <-chan struct{}) {
	t.Helper()
	for i := range n {
		select {
		case probe <- time.Now():
		case <-ended:
			t.Fatalf("the watch ended after %d probes, before the last of %d", i, n)
		}
	}
	select {
	case <-ended:
	case probe <- time.Now():
		t.Fatalf("the watch went on after %d probes", n)
	}
}
