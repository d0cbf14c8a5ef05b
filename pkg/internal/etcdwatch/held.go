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

// matches reports whether etcd holds at rev what the watch showed: as many keys, and as the one last written the key
// the watch last saw written, in the same version (stamp). One key of the range is read, whatever the range's size.
// Another etcd matching both holds that key as the watch showed it, and as many others, last written before it.
func (h *held) matches(ctx context.Context, cli *clientv3.Client, key string, rev int64,
	opts []clientv3.OpOption) (bool, error) {
	resp, err := cli.Get(ctx, key, append(opts[:len(opts):len(opts)], clientv3.WithRev(rev),
		clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(1))...)
	if err != nil {
		return true, err
	}
	if resp.Count != int64(len(h.mods)) {
		return false, nil
	}
	if len(resp.Kvs) == 0 {
		return true, nil
	}
	last := resp.Kvs[0]
	if st, ok := h.mods[string(last.Key)]; !ok || st != stampOf(last) {
		return false, nil
	}
	for _, st := range h.mods {
		if st.mod > last.ModRevision {
			return false, nil
		}
	}
	return true, nil
}
