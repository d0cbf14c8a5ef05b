package deploy

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// etcdFlag returns the value of an etcd --name=value flag in a command line, and whether it is there.
func etcdFlag(args []string, name string) (string, bool) {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// checkEtcdHistory says what is wrong with an etcd command line for a store that is written to for ever. etcd keeps
// every revision of every key until it is compacted, and nothing compacts unless told: the registry's
// registrations (written again at every start and every lost lease) and dynconfig's overrides grow its database
// until the quota (2 GiB by default) raises NOSPACE, which refuses every write, registrations included. Periodic
// compaction keeps the given window of history; a watch that falls behind it is told it was compacted, and
// pkg/discovery and pkg/dynconfig list again. The quota is ours, not the default's.
func checkEtcdHistory(args []string) []string {
	var errs []string
	if m, _ := etcdFlag(args, "auto-compaction-mode"); m != "periodic" {
		errs = append(errs, "--auto-compaction-mode="+strconv.Quote(m)+", want periodic")
	}
	r, _ := etcdFlag(args, "auto-compaction-retention")
	if d, err := time.ParseDuration(r); err != nil || d <= 0 {
		errs = append(errs, "--auto-compaction-retention="+strconv.Quote(r)+", want a duration: etcd compacts nothing by default")
	}
	q, _ := etcdFlag(args, "quota-backend-bytes")
	if n, err := strconv.ParseInt(q, 10, 64); err != nil || n <= 0 {
		errs = append(errs, "--quota-backend-bytes="+strconv.Quote(q)+", want a size of ours")
	}
	return errs
}

// TestEtcdCompactsItsHistory: see checkEtcdHistory, in compose and in the kind build.
func TestEtcdCompactsItsHistory(t *testing.T) {
	s, ok := loadCompose(t).Services["etcd"]
	if !ok {
		t.Fatal("compose runs no etcd service: follow it here")
	}
	for _, e := range checkEtcdHistory(s.Command) {
		t.Errorf("compose etcd: %s", e)
	}
	where, c := kindContainer(t, "etcd")
	for _, e := range checkEtcdHistory(append(slices.Clone(c.Command), c.Args...)) {
		t.Errorf("%s: %s", where, e)
	}
}

// TestKindEtcdBootstrapsAsANewCluster: the kind build's etcd keeps its data in an emptyDir, which a new pod starts
// without, while the platform's pods keep watching. etcd derives its cluster id from the peer URLs and
// --initial-cluster-token, read only when it bootstraps an empty data directory; with the default token every new
// pod came back as the same cluster, and pkg/internal/etcdwatch, which ends a watch answered by another cluster id
// (d135c2e9), could not tell. The token is the pod's UID: new with each pod, as the emptyDir is, and the same
// across a container restart, which keeps the data (and so ignores the token).
func TestKindEtcdBootstrapsAsANewCluster(t *testing.T) {
	where, c := kindContainer(t, "etcd")
	token, ok := etcdFlag(append(slices.Clone(c.Command), c.Args...), "initial-cluster-token")
	name, isVar := strings.CutPrefix(token, "$(")
	name, closed := strings.CutSuffix(name, ")")
	if !ok || !isVar || !closed {
		t.Fatalf("%s: --initial-cluster-token=%q, want $(VAR) of the pod's UID", where, token)
	}
	i := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == name })
	if i < 0 || c.Env[i].ValueFrom == nil || c.Env[i].ValueFrom.FieldRef == nil || c.Env[i].ValueFrom.FieldRef.FieldPath != "metadata.uid" {
		t.Errorf("%s: %s is not the pod's metadata.uid (downward API)", where, name)
	}
}
