package etcdwatch

import (
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd sends a watch that starts behind its revision the events in batches of at most 1000 revisions, each response
// stamped with etcd's revision then, not the last one it carries: after the first, the revision a response names is
// past events still to come. The probe checked etcd's range at that revision against what the watch had shown, found
// keys it had not shown yet, and ended the watch as if etcd had been replaced: a false warning and a re-list. Here
// 1100 writes lie between the read and the watch, and a probe follows the first response.
func TestFollowProbeBetweenBatchesOfACatchingUpWatch(t *testing.T) {
	cli := ownEtcdClient(t)
	ctx := t.Context()
	const prefix = "/batch-test/"
	start, err := cli.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := range 1100 {
		put, err := cli.Put(ctx, prefix+string(rune('a'+i%26)), "v")
		if err != nil {
			t.Fatal(err)
		}
		last = put.Header.Revision
	}

	probe := make(chan time.Time, 1)
	cut, caughtUp := make(chan struct{}), make(chan struct{})
	ended := make(chan End, 1)
	first := true
	go func() {
		ended <- Follow(ctx, cli, prefix, start.Header.Revision+1, start, probe, time.Second, func(resp clientv3.WatchResponse) {
			shown := resp.Events[len(resp.Events)-1].Kv.ModRevision
			if first && shown < resp.Header.Revision {
				probe <- time.Now() // taken before the next response: the batches come 100 ms apart
				close(cut)
			}
			first = false
			if shown == last {
				close(caughtUp)
			}
		}, clientv3.WithPrefix())
	}()
	for _, wait := range []chan struct{}{cut, caughtUp} {
		select {
		case <-wait:
		case end := <-ended:
			t.Fatalf("Follow ended %+v on the etcd it follows, catching up on 1100 revisions", end)
		case <-time.After(30 * time.Second):
			t.Fatal("the watch never sent its first batch cut short, or never caught up")
		}
	}
	probe <- time.Now()
	probe <- time.Now() // taken once the one before is answered
	select {
	case end := <-ended:
		t.Fatalf("Follow ended %+v on the etcd it follows, caught up", end)
	default:
	}
}
