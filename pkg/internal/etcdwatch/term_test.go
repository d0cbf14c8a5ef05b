package etcdwatch

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/shanhai-dev/shanhai/pkg/internal/etcdwatch/headertest"
	"github.com/shanhai-dev/shanhai/pkg/testenv"
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
	if !end.Lost || end.WentBack || end.Replaced || !strings.Contains(end.Cause, "raft term") {
		t.Fatalf("Follow ended %+v, want Lost alone, its cause the term gone back (not the revision or the held range)",
			end)
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

// Members of one healthy cluster may answer at different raft terms: etcd takes a member's from the last entry it
// applied, so one that caught up from a snapshot, or restarted with nothing to replay, reads behind (or 0) until the
// cluster next writes, and the client's balancer sends each read to the next member. A term compared across members
// ended the watch whenever a probe went from one at a higher term to one behind: a re-list and a warning every other
// probe. The answers here are the shared etcd's, their headers rewritten as two such members would send them; the
// last shows the member first seen at the higher term behind it, which ends the watch (Lost).
func TestFollowComparesTheTermsOfOneMemberOnly(t *testing.T) {
	// The member read first, its term since raised; another member, at the term the first left behind; that one
	// before it applies an entry; the first member again, then behind the term it answered at.
	ahead := func(h *etcdserverpb.ResponseHeader) { h.RaftTerm += 5 }
	lagging := func(h *etcdserverpb.ResponseHeader) { h.MemberId++ }
	restarted := func(h *etcdserverpb.ResponseHeader) { h.MemberId, h.RaftTerm = h.MemberId+1, 0 }
	end := endOfProbes(t, ahead, lagging, restarted, ahead, headertest.AsItIs)
	if !end.Lost || !strings.Contains(end.Cause, "raft term") {
		t.Fatalf("Follow ended %+v, want Lost, its cause the raft term", end)
	}
}

// An etcd wiped while at its first term and bootstrapped again with another --initial-cluster-token answers at the
// term the old one did, with another cluster id: the term said nothing, and the watch went on from the old history.
// Now another cluster id ends it (Lost). The answers are the shared etcd's, the second probe's header rewritten as
// such an etcd would send it.
func TestFollowEndsOnAnotherClusterID(t *testing.T) {
	end := endOfProbes(t, headertest.AsItIs, headertest.OtherCluster)
	if !end.Lost || end.WentBack || end.Replaced {
		t.Fatalf("Follow ended %+v, want Lost alone", end)
	}
	if !strings.Contains(end.Cause, "cluster id") {
		t.Fatalf("Follow ended Lost with cause %q, want the cluster id named", end.Cause)
	}
}

// endOfProbes follows a key of the test's own on the shared etcd, the headers of the probes' answers rewritten by
// rewrites in turn, and returns how Follow ended on the last of them. It fails the test if Follow ended on an earlier
// one, or went on after the last.
func endOfProbes(t *testing.T, rewrites ...func(*etcdserverpb.ResponseHeader)) End {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: testenv.Etcd(t), DialTimeout: 5 * time.Second,
		Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	ctx := t.Context()
	key := fmt.Sprintf("/term-test/%d", time.Now().UnixNano())
	if _, err := cli.Put(ctx, key, "v"); err != nil {
		t.Fatal(err)
	}
	start, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	cli.KV = headertest.Rewrite(cli.KV, rewrites...)
	probe := make(chan time.Time)
	ended := make(chan End, 1)
	go func() {
		ended <- Follow(ctx, cli, key, start.Header.Revision+1, start, probe, 5*time.Second, func(clientv3.WatchResponse) {})
	}()
	// Each send returns once Follow took the tick, so the probe before it has been answered.
	for i := range rewrites {
		select {
		case probe <- time.Now():
		case end := <-ended:
			t.Fatalf("Follow ended %+v after %d probes, before the last answer rewritten", end, i)
		}
	}
	select {
	case probe <- time.Now():
		t.Fatalf("Follow went on after the last of %d answers rewritten", len(rewrites))
	case end := <-ended:
		return end
	}
	return End{}
}
