package etcdwatch

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// An etcd wiped and refilled, past the watch's revision, with as many keys in the range and the same key written last
// at the same revisions with the same value as the watch showed, passes the held check: the watch went on from the
// old history, the range's other keys never seen. Its raft term starts again at 2, below the term of an etcd that was
// restarted once, while a restart keeping the data only raises it: a probe ends the watch (Lost) on the first, never
// on the second.
func TestFollowEndsOnAnEtcdRefilledAsItWas(t *testing.T) {
	e, cli := ownEtcd(t)
	probed := &probeEnds{KV: cli.KV, done: make(chan struct{}, 1)}
	cli.KV = probed
	ctx := t.Context()
	const prefix = "/term-test/"
	fill := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			if _, err := cli.Put(ctx, prefix+k, "v"); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.Stop()
	e.Start() // the old etcd has been restarted once: a term above a fresh one's
	fill("a", "b")
	start, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	probe := make(chan time.Time)
	ended := make(chan End, 1)
	go func() {
		ended <- Follow(ctx, cli, prefix, start.Header.Revision+1, start, probe, 5*time.Second,
			func(clientv3.WatchResponse) {}, clientv3.WithPrefix())
	}()
	// tick sends n probes, each once the one before has ended: a probe still reading across the wipe below would
	// read the new etcd as the one it follows, before it was refilled.
	tick := func(n int) (End, bool) {
		for range n {
			select {
			case probe <- time.Now():
			case end := <-ended:
				return end, true
			}
			select {
			case <-probed.done:
			case end := <-ended:
				return end, true
			case <-time.After(6 * time.Second): // its reads failed (etcd coming back) after at most 5 s: it has ended
			}
		}
		return End{}, false
	}
	if end, ok := tick(2); ok {
		t.Fatalf("Follow ended %+v on the etcd it follows", end)
	}
	e.Stop()
	e.Start() // restarted with its data: a higher term, nothing lost
	if end, ok := tick(3); ok {
		t.Fatalf("Follow ended %+v on its etcd restarted with its data", end)
	}

	e.Stop()
	e.Wipe()
	e.Start()
	fill("c", "b") // as many keys, b written last at the revisions the watch saw, with the same value
	end, ok := tick(3)
	if !ok {
		t.Fatal("Follow went on following an etcd wiped and refilled with another range")
	}
	if !end.Lost || end.WentBack || end.Replaced {
		t.Fatalf("Follow ended %+v, want Lost alone (the term went back, not the revision or the held range)", end)
	}
}

// probeEnds signals each probe that ended on its last read, the one of the key the watch saw written last (a single
// key at a revision).
type probeEnds struct {
	clientv3.KV
	done chan struct{}
}

func (p *probeEnds) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	resp, err := p.KV.Get(ctx, key, opts...)
	if op := clientv3.OpGet(key, opts...); len(op.RangeBytes()) == 0 && op.Rev() != 0 && err == nil {
		select {
		case p.done <- struct{}{}:
		default:
		}
	}
	return resp, err
}
