// Package etcdwatch is the watch loop that pkg/discovery's resolver and pkg/dynconfig's values share: follow a key
// (or prefix) from a revision, and give the watch up when etcd's revision has gone back.
//
// It exists because etcd holds a watch from a revision it has not reached yet and sends nothing: an etcd restarted
// without its data (or restored from a snapshot) leaves such a watch silent for good while everything looks healthy.
// Follow therefore reads etcd's revision on every probe tick and ends the watch when it is below one already seen;
// the caller re-reads what it follows. What a caller does with the events, and how it re-reads, stays its own.
//
// Every watch requires a leader (clientv3.WithRequireLeader). Without it, a member partitioned from the rest of a
// multi-member cluster keeps the watch open and sends nothing, with no error, and the probe's reads failing there
// say nothing either: the gateway's routing table and every dynamic setting would go stale while everything looked
// healthy. With it, etcd ends the watch with ErrNoLeader once its member has had no leader for three election
// timeouts (and refuses a new one at once while it has none, as a restarted etcd may for a moment), Follow returns
// that error, and the caller lists or reads again before it watches anew: the error it logs says why.
//
// It also holds the one bound on a start's first etcd call (StartTimeout, AtStart), which the resolver, dynconfig
// and pkg/server/discoverable's lease and registration share.
package etcdwatch

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// RevisionProbe is how often a watcher checks that etcd's revision has not gone back and that etcd still holds what
// the watch showed: three small reads per watcher (the range's count now and at the last revision seen, which etcd
// takes from its in-memory index, and the one key the watch saw written last: see held.matches), next to nothing for
// etcd whatever the range's size, bounding how long it follows an etcd that lost its data late.
const RevisionProbe = 10 * time.Second

// End says why Follow returned.
type End struct {
	Next       int64 // the revision to watch from next: one past the last response's, else the rev Follow was given
	Progressed bool  // the watch delivered at least one response
	Err        error // the watch's error, when it ended on one
	WentBack   bool  // a probe found etcd's revision below Next-1, the last one seen
	Replaced   bool  // a probe found etcd holding other keys than the watch showed, at its last event's revision (held)
	Lost       bool  // a probe found etcd's raft term below one read before, or another cluster id: its log was lost (see Follow)
	Revision   int64 // etcd's revision that probe read, when WentBack, Replaced or Lost
	// Cause says, when Lost, which of the two the probe found, with the values compared: the callers log it rather
	// than a cause of their own, which named only the term once the cluster id ended watches too.
	Cause string
}

// Follow watches key with opts (clientv3.WithPrefix, say) from rev and passes every response without an error to
// handle, until the watch channel closes, the watch reports an error, or a receive on probe finds etcd's revision
// below the last one seen, or etcd holding other keys in the range at that revision than the watch showed (its data
// replaced and written past it: see held). read is the caller's read of key with opts at rev-1, what the watch's
// events then keep up: nil when it has none, and Follow reads the range at the first probe instead (then from
// whichever etcd answers). probe ticks every period (the caller's ticker, so its ticks go on across the
// re-reads between calls). The probe's reads are linearizable Gets of key with opts, so a lagging member cannot
// report a revision behind one the watch has shown, given at most one period and never more than 5 s; a probe that
// fails says nothing (etcd may be away, and the watch resumes by itself when it is back), nor does a range compacted
// past the last revision seen (a replaced etcd has not compacted past a revision it reached a moment ago). The watch
// ends when Follow returns.
//
// A probe also ends the watch when a member answers it at a raft term below one that member answered the caller's
// read or an earlier probe at, or when etcd answers with another cluster id than before (see terms). A term never goes
// back in a cluster that keeps its log (a restart, an election only raise it), while an etcd wiped or restored from a
// snapshot starts again at term 2; a cluster id is fixed at bootstrap. Members' terms are not compared with each
// other. That tells an etcd refilled with as many keys and the same last-written key as the watch showed, which held
// cannot, whenever the old etcd had reached a higher term (one restart or election is enough) or the new one was
// bootstrapped with another --initial-cluster-token. What is left: an etcd wiped at its first term, bootstrapped
// again with the same flags, and refilled past the revision seen with as many keys in the range and the key written
// last as the watch showed it (same revisions, lease and value). Its cluster and member ids, term and revision are
// the old one's (and its raft index too, for the same writes: checked on etcd 3.4.23); only the range's other keys
// differ, which only reading the whole range at every probe would see (see held.matches for why it does not). None of
// the platform's ranges can be refilled so: the registry writes every key under a lease, and a new etcd grants other
// lease ids (time-based; measured on etcd 3.4.23, a first-term etcd wiped and started again with the same flags: same
// cluster and member ids, term 2 and revision, lease 18d1a252084e6006 then 18d1a2520850f906), so its last key differs
// from the one held; dynconfig's range is its one key, which refilled with the same revision and value is the same.
func Follow(ctx context.Context, cli *clientv3.Client, key string, rev int64, read *clientv3.GetResponse,
	probe <-chan time.Time, period time.Duration, handle func(clientv3.WatchResponse), opts ...clientv3.OpOption) End {
	// WithRequireLeader: etcd ends the watch with ErrNoLeader once its member has lost the leader (package doc).
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel() // ends the watch when a probe gives it up
	end := End{Next: rev}
	wch := cli.Watch(wctx, key, append(opts[:len(opts):len(opts)], clientv3.WithRev(rev))...)
	var seen held
	var term terms // the cluster id and each member's highest raft term: the caller's read's, then the probes'
	if read != nil && read.Header != nil && read.Header.Revision == rev-1 {
		seen.keep(read.Kvs)
		term.lost(read.Header)
	}
	// shown is the revision up to which the watch has shown every event, where seen is what etcd holds: the last
	// event's, not the response's revision. A watch behind etcd's revision gets its events in batches of at most 1000
	// revisions, each response carrying etcd's revision at the time, past the events of the batches still to come;
	// the range checked at that revision held keys the watch had not shown yet, and a probe between two batches
	// called etcd replaced.
	shown := rev - 1
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				return end
			}
			if err := resp.Err(); err != nil {
				end.Err = err
				return end
			}
			handle(resp)
			seen.apply(resp)
			end.Next, end.Progressed = resp.Header.Revision+1, true
			if n := len(resp.Events); n > 0 {
				shown = max(shown, resp.Events[n-1].Kv.ModRevision)
			}
		case <-probe:
			pctx, pcancel := context.WithTimeout(ctx, min(period, 5*time.Second))
			resp, err := cli.Get(pctx, key, append(opts[:len(opts):len(opts)], clientv3.WithCountOnly())...)
			if err == nil && resp.Header.Revision < end.Next-1 {
				pcancel()
				end.WentBack, end.Revision = true, resp.Header.Revision
				return end
			}
			if err == nil {
				if cause := term.lost(resp.Header); cause != "" {
					pcancel()
					end.Lost, end.Revision, end.Cause = true, resp.Header.Revision, cause
					return end
				}
			}
			if err == nil && shown > 0 {
				if seen.mods == nil {
					_ = seen.read(pctx, cli, key, shown, opts)
				} else if same, merr := seen.matches(pctx, cli, key, shown, opts); merr == nil && !same {
					pcancel()
					end.Replaced, end.Revision = true, resp.Header.Revision
					return end
				}
			}
			pcancel()
		}
	}
}
