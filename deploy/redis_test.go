package deploy

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// redisArg returns the value after flag in a redis-server command line, or "".
func redisArg(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// redisBytes parses a redis.conf memory size: a number with an optional unit, k/m/g (powers of 1000) or
// kb/mb/gb (powers of 1024), in any case.
func redisBytes(s string) (int64, bool) {
	s = strings.ToLower(s)
	units := []struct {
		suffix string
		scale  int64
	}{{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30}, {"k", 1e3}, {"m", 1e6}, {"g", 1e9}}
	scale := int64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, scale = n, u.scale
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * scale, err == nil && n > 0
}

// checkRedisMemory says what is wrong with a redis-server command line under a container memory limit of limit
// bytes. Every key the platform writes carries a TTL: the limiters' GCRA state (pkg/limit, the gateway's quota:
// redis_rate sets one), the log-in guards' counters, the profile and catalogue caches. So the volatile-* policies
// would evict the limiters' state as readily as the allkeys-* ones, and a client whose counter is evicted starts
// again with a full budget: a flood of new keys (log ins for made-up accounts, each its own counter) pushed an
// account's log-in counter out under allkeys-lru and its lockout was gone. noeviction refuses writes instead once
// maxmemory is reached, and a limiter refused by Redis decides locally at limit ÷ replicas (logged and metered),
// which never admits more; caches miss and fill nothing until keys expire. maxmemory must be set below the
// container's limit, with room for Redis's own buffers, or the container is killed before Redis refuses anything.
func checkRedisMemory(args []string, limit int64) []string {
	var errs []string
	if p := redisArg(args, "--maxmemory-policy"); p != "noeviction" {
		errs = append(errs, "--maxmemory-policy "+strconv.Quote(p)+", want noeviction: every key the platform writes "+
			"has a TTL, so an evicting policy can drop a limiter's or log-in guard's state and reset its limit")
	}
	max, ok := redisBytes(redisArg(args, "--maxmemory"))
	switch {
	case !ok:
		errs = append(errs, "no --maxmemory: Redis grows until the container is killed")
	case limit <= 0:
		errs = append(errs, "no container memory limit to size --maxmemory against")
	case max > limit*8/10:
		errs = append(errs, "--maxmemory "+redisArg(args, "--maxmemory")+" leaves less than 20 % of the "+
			strconv.FormatInt(limit>>20, 10)+" MiB limit for Redis's buffers and fragmentation")
	}
	return errs
}

// TestRedisNeverEvictsTheLimitersState: Redis in compose and in the in-cluster infrastructure refuses writes when
// full rather than evicting (checkRedisMemory says why). Both ran allkeys-lru.
func TestRedisNeverEvictsTheLimitersState(t *testing.T) {
	s, ok := loadCompose(t).Services["redis"]
	if !ok || s.Deploy == nil || s.Deploy.Resources.Limits == nil {
		t.Fatal("compose: no redis service with a memory limit: follow it here")
	}
	for _, e := range checkRedisMemory(s.Command, int64(s.Deploy.Resources.Limits.MemoryBytes)) {
		t.Errorf("compose redis: %s", e)
	}
	where, c := kindContainer(t, "redis")
	for _, e := range checkRedisMemory(append(slices.Clone(c.Command), c.Args...), c.Resources.Limits.Memory().Value()) {
		t.Errorf("%s: %s", where, e)
	}
}

// kindContainer is the first container of the kind build's workload named name, and where it is for messages.
func kindContainer(t *testing.T, name string) (string, corev1.Container) {
	t.Helper()
	for _, o := range build(t, "k8s/overlays/kind") {
		if spec := podSpec(o); spec != nil && o.Name == name {
			return "k8s " + o.Kind + " " + o.Namespace + "/" + o.Name, spec.Containers[0]
		}
	}
	t.Fatalf("k8s: no %s workload in the kind build: follow it here", name)
	return "", corev1.Container{}
}
