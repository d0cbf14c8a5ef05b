package discovery

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/shanhai-dev/shanhai/pkg/internal/etcdwatch"
)

// EtcdResolver keeps every service's instances in memory, fed by one watch
// on Prefix. Instances is a lock-free read of an immutable snapshot, so the
// hot path of every outgoing call never waits for etcd.
//
// While etcd is unreachable the snapshot simply stops changing: callers keep
// the last known instances (and their own breakers handle the ones that have
// died meanwhile). When the watch cannot resume — its revision was compacted
// — the resolver lists the prefix again and replaces the snapshot, so
// instances that vanished during the gap are dropped too.
//
// Nor does it follow an etcd whose revision went back (restarted without its
// data, or restored from a snapshot): etcd holds a watch from a revision it
// has not reached yet and sends nothing, so the snapshot would stop changing
// for good while everything looked healthy. The resolver therefore reads
// etcd's revision every RevisionProbe and lists afresh when it is below one
// it has already seen. An etcd that lost its data and was written past that
// revision before the probe looked (its cluster and member IDs are the same
// when its configuration is) is found by the same probe: at the last
// revision seen it holds other keys under Prefix than the watch showed.
type EtcdResolver struct {
	cli   *clientv3.Client
	log   *slog.Logger
	probe time.Duration
	snap  atomic.Pointer[map[string][]Instance]
	all   map[string]map[string]Instance // service → id → instance; watch goroutine only
	done  chan struct{}
}

// RevisionProbe is how often a resolver checks that etcd's revision has not
// gone back or holds other instances than the watch showed (ten seconds):
// two count-only reads of the prefix and one read of a single key per
// process (etcdwatch.RevisionProbe), so it costs etcd next to nothing, and
// bounds how long a resolver follows an etcd that lost its data late.
const RevisionProbe = etcdwatch.RevisionProbe

// StartTimeout is how long NewEtcdResolver waits for etcd's first answer
// (ten seconds) before it fails: ctx, the watch's lifetime, does not bound it.
// It is the bound of every start's first etcd call (etcdwatch.StartTimeout).
const StartTimeout = etcdwatch.StartTimeout

// NewEtcdResolver lists the current instances (failing if etcd cannot be
// read now: it gives no answer within StartTimeout, or ctx ends first) and
// watches for changes until ctx ends or cli is closed.
func NewEtcdResolver(ctx context.Context, cli *clientv3.Client) (*EtcdResolver, error) {
	return newEtcdResolver(ctx, cli, RevisionProbe)
}

func newEtcdResolver(ctx context.Context, cli *clientv3.Client, probe time.Duration) (*EtcdResolver, error) {
	r := &EtcdResolver{cli: cli, log: slog.Default(), probe: probe, done: make(chan struct{})}
	empty := map[string][]Instance{}
	r.snap.Store(&empty)
	// Bounded: unbounded, this read hung a gateway at start, silently,
	// before it listened (see etcdwatch.StartTimeout).
	var listed *clientv3.GetResponse
	if err := etcdwatch.AtStart(ctx, func(ctx context.Context) (err error) {
		listed, err = r.list(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	go r.watch(ctx, listed)
	return r, nil
}

// Instances returns the known instances of service sorted by ID; the slice
// is shared and must not be modified.
func (r *EtcdResolver) Instances(service string) []Instance {
	return (*r.snap.Load())[service]
}

// Done is closed when the watch has stopped (its ctx ended or its client was
// closed).
func (r *EtcdResolver) Done() <-chan struct{} { return r.done }

// list replaces the snapshot with what etcd holds under Prefix, and returns that read: the watch goes on from it.
func (r *EtcdResolver) list(ctx context.Context) (*clientv3.GetResponse, error) {
	resp, err := r.cli.Get(ctx, Prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("discovery: list %s: %w", Prefix, err)
	}
	r.all = map[string]map[string]Instance{}
	for _, kv := range resp.Kvs {
		r.apply(mvccpb.PUT, kv)
	}
	next := make(map[string][]Instance, len(r.all))
	for svc := range r.all {
		next[svc] = r.sorted(svc)
	}
	r.snap.Store(&next)
	return resp, nil
}

// watch follows Prefix from listed, the last list, until ctx ends or the client closes.
func (r *EtcdResolver) watch(ctx context.Context, listed *clientv3.GetResponse) {
	defer close(r.done)
	// A closed client ends the watch too: otherwise the re-list below would
	// retry forever on it (the gateway closes its client when Run returns,
	// which may be before ctx ends, in a process that lives on).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.cli.Ctx(), cancel)()
	backoff := 100 * time.Millisecond
	probe := time.NewTicker(r.probe)
	defer probe.Stop()
	rev := listed.Header.Revision + 1
	for ctx.Err() == nil {
		var progressed bool
		if rev, progressed = r.follow(ctx, rev, listed, probe.C); progressed {
			backoff = 100 * time.Millisecond
		}
		// The watch ended without ctx ending: compaction, etcd's revision
		// went back, its member lost the leader, or the client gave up.
		// Re-list (keeping the old snapshot until that succeeds).
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			resp, err := r.list(ctx)
			if err == nil {
				listed, rev = resp, resp.Header.Revision+1
				break
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// follow applies the watch's changes from rev, on from listed (the list at
// rev-1), until it ends or a probe finds etcd's revision below the last one
// seen, or other keys there than the watch showed, and returns the revision
// to go on from and whether the watch delivered any change.
func (r *EtcdResolver) follow(ctx context.Context, rev int64, listed *clientv3.GetResponse,
	probe <-chan time.Time) (next int64, progressed bool) {
	end := etcdwatch.Follow(ctx, r.cli, Prefix, rev, listed, probe, r.probe, func(resp clientv3.WatchResponse) {
		changed := map[string]bool{}
		for _, ev := range resp.Events {
			if svc := r.apply(ev.Type, ev.Kv); svc != "" {
				changed[svc] = true
			}
		}
		r.publish(changed)
	}, clientv3.WithPrefix())
	switch {
	case end.Err != nil:
		r.log.Warn("discovery watch interrupted", "error", end.Err.Error())
	case end.WentBack:
		r.log.Warn("discovery: etcd's revision went back (restarted without its data?), listing again",
			"revision", end.Revision, "seen", end.Next-1)
	case end.Replaced:
		r.log.Warn("discovery: etcd holds other instances at the revision last seen than the watch showed"+
			" (restarted without its data and written since?), listing again", "revision", end.Revision, "seen", end.Next-1)
	case end.Lost:
		r.log.Warn("discovery: etcd lost its log (wiped or restored from a snapshot?), listing again",
			"cause", end.Cause, "revision", end.Revision)
	}
	return end.Next, end.Progressed
}

// apply records one put or delete and returns the service it touched.
func (r *EtcdResolver) apply(typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) string {
	svc, id, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), Prefix), "/")
	if !ok || svc == "" || id == "" {
		return ""
	}
	if typ == mvccpb.DELETE {
		delete(r.all[svc], id)
		return svc
	}
	var in Instance
	if err := json.Unmarshal(kv.Value, &in); err != nil || !dialable(in.Addr) {
		r.log.Warn("discovery: ignoring malformed instance", "key", string(kv.Key))
		// The key no longer describes the instance it held: keeping the old
		// address would route to whatever now listens there, and a resolver
		// listing afresh would not have it either.
		if _, had := r.all[svc][id]; had {
			delete(r.all[svc], id)
			return svc
		}
		return ""
	}
	in.Service, in.ID = svc, id // the key is the truth
	if r.all[svc] == nil {
		r.all[svc] = map[string]Instance{}
	}
	r.all[svc][id] = in
	return svc
}

func (r *EtcdResolver) publish(changed map[string]bool) {
	if len(changed) == 0 {
		return
	}
	next := maps.Clone(*r.snap.Load())
	for svc := range changed {
		if list := r.sorted(svc); len(list) > 0 {
			next[svc] = list
		} else {
			delete(next, svc)
		}
	}
	r.snap.Store(&next)
}

func (r *EtcdResolver) sorted(svc string) []Instance {
	list := slices.Collect(maps.Values(r.all[svc]))
	slices.SortFunc(list, func(a, b Instance) int { return cmp.Compare(a.ID, b.ID) })
	return list
}
