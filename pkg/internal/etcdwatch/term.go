package etcdwatch

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// terms is the cluster id and the highest raft term each member of etcd answered a read at. The term in an answer
// is the serving member's, and etcd sets it from the log entries that member applies (etcdserver's apply, not raft's
// own term): a follower that caught up from the leader's snapshot keeps the term of the entry it applied before until
// the cluster next writes, and a member restarted with no entry to replay reads 0 until then. So two members of a
// healthy cluster may answer linearizable reads at different terms, and the client's balancer sends reads to each in
// turn: compared across members, one lagging member ended every watch on every other probe, each end a re-list and a
// warning. Only the same member's term going back says its log was lost (a member wiped keeps its id: see held), and
// 0 says nothing.
//
// The cluster id, by contrast, is one for every member and fixed at bootstrap: another one is another cluster, a
// wiped etcd bootstrapped with another --initial-cluster-token (or a client's endpoint moved to another cluster). It
// tells a wipe the term cannot, one at the old etcd's first term, but only then: the id is a hash of the members'
// peer URLs and that token, so an etcd bootstrapped again with the same flags gets the same id (etcd-io/etcd#2699;
// etcd 3.4.23 here, its default token).
type terms struct {
	cluster uint64
	of      map[uint64]uint64
}

// lost records h's cluster id and its term for its member, and says how etcd's log was lost: its cluster id is another
// than one answered before, or the term is below one that member answered at before. It returns "" when neither.
func (t *terms) lost(h *etcdserverpb.ResponseHeader) string {
	if h == nil {
		return ""
	}
	if h.ClusterId != 0 {
		if t.cluster != 0 && h.ClusterId != t.cluster {
			return fmt.Sprintf("cluster id changed from %x to %x", t.cluster, h.ClusterId)
		}
		t.cluster = h.ClusterId
	}
	if h.RaftTerm == 0 {
		return ""
	}
	if before := t.of[h.MemberId]; h.RaftTerm < before {
		return fmt.Sprintf("raft term of member %x went back from %d to %d", h.MemberId, before, h.RaftTerm)
	}
	if t.of == nil {
		t.of = map[uint64]uint64{}
	}
	t.of[h.MemberId] = h.RaftTerm
	return ""
}
