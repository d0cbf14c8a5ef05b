package etcdwatch

import (
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// terms is the highest raft term each member of etcd answered a read at. The term in an answer is the serving
// member's, and etcd sets it from the log entries that member applies (etcdserver's apply, not raft's own term): a
// follower that caught up from the leader's snapshot keeps the term of the entry it applied before until the cluster
// next writes, and a member restarted with no entry to replay reads 0 until then. So two members of a healthy cluster
// may answer linearizable reads at different terms, and the client's balancer sends reads to each in turn: compared
// across members, one lagging member ended every watch on every other probe, each end a re-list and a warning. Only
// the same member's term going back says its log was lost (a member wiped keeps its id: see held), and 0 says
// nothing.
type terms map[uint64]uint64

// wentBack records h's term for its member and reports whether it is below one that member answered at before.
func (t terms) wentBack(h *etcdserverpb.ResponseHeader) bool {
	if h == nil || h.RaftTerm == 0 {
		return false
	}
	if h.RaftTerm < t[h.MemberId] {
		return true
	}
	t[h.MemberId] = h.RaftTerm
	return false
}
