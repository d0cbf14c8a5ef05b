package etcdwatch

import (
	"context"
	"hash/maphash"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// held is what a watch has shown of its range: each key as it was (its stamp) at the last revision seen. An etcd
// restarted without its data and written past that revision before a probe looks reads no lower than it, and comes
// back with the same cluster and member IDs when its configuration is the same (the IDs are hashes of the peer URLs
// and the cluster token); the watch then resumes on it from the old revision, the writes below it never seen. What
// etcd holds in the range at the last revision seen is what tells: MVCC keeps it fixed, so the etcd the watch
// followed still holds exactly what the watch showed there.
type held struct {
	mods map[string]stamp // nil until read
}

// stamp is one version of a key: its revisions, its lease and its value's hash. The value and the lease tell apart
// a key the new etcd wrote at the revision the old one did (a config written as a cluster's first write; an instance
// registering anew gets a new lease).
type stamp struct {
	mod, create, version, lease int64
	value                       uint64
}

var valueSeed = maphash.MakeSeed()

func stampOf(kv *mvccpb.KeyValue) stamp {
	return stamp{kv.ModRevision, kv.CreateRevision, kv.Version, kv.Lease, maphash.Bytes(valueSeed, kv.Value)}
}

// keep takes kvs, the whole range at one revision, as the baseline that the watch's events then keep up.
func (h *held) keep(kvs []*mvccpb.KeyValue) {
	h.mods = make(map[string]stamp, len(kvs))
	for _, kv := range kvs {
		h.mods[string(kv.Key)] = stampOf(kv)
	}
}

// read takes what etcd holds in the range at rev as the baseline: for a caller that had no read of its own.
func (h *held) read(ctx context.Context, cli *clientv3.Client, key string, rev int64, opts []clientv3.OpOption) error {
	resp, err := cli.Get(ctx, key, append(opts[:len(opts):len(opts)], clientv3.WithRev(rev))...)
	if err != nil {
		return err
	}
	h.keep(resp.Kvs)
	return nil
}

// apply keeps the baseline up with one response's events.
func (h *held) apply(resp clientv3.WatchResponse) {
	if h.mods == nil {
		return
	}
	for _, ev := range resp.Events {
		if ev.Type == mvccpb.DELETE {
			delete(h.mods, string(ev.Kv.Key))
		} else {
			h.mods[string(ev.Kv.Key)] = stampOf(ev.Kv)
		}
	}
}

// matches reports whether etcd holds at rev what the watch showed: as many keys in the range, and the key the watch
// saw written last as the watch showed it (its stamp). Both reads cost etcd next to nothing whatever the range's size:
// a count walks etcd's in-memory index, and one key is one read. Asking for the range's key written last instead (the
// range sorted by modification, limit 1) made etcd read every key and value of the range and sort them, on every
// probe of every watcher (a sort lifts the limit): the resolver's range is every instance of every service.
// Another etcd matching both holds that key at the same revisions, with the same lease and value, and as many others:
// a history the same up to it (an instance registering anew takes a new lease).
func (h *held) matches(ctx context.Context, cli *clientv3.Client, key string, rev int64,
	opts []clientv3.OpOption) (bool, error) {
	count, err := cli.Get(ctx, key, append(opts[:len(opts):len(opts)], clientv3.WithRev(rev), clientv3.WithCountOnly())...)
	if err != nil {
		return true, err
	}
	if count.Count != int64(len(h.mods)) {
		return false, nil
	}
	last, want, ok := h.last()
	if !ok {
		return true, nil
	}
	resp, err := cli.Get(ctx, last, clientv3.WithRev(rev))
	if err != nil {
		return true, err
	}
	return len(resp.Kvs) == 1 && stampOf(resp.Kvs[0]) == want, nil
}

// last is the key the watch saw written last and its stamp; of several written at one revision (a transaction), any.
func (h *held) last() (key string, st stamp, ok bool) {
	for k, s := range h.mods {
		if !ok || s.mod > st.mod {
			key, st, ok = k, s, true
		}
	}
	return key, st, ok
}
