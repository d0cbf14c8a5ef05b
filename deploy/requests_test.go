package deploy

import (
	"math"
	"testing"
)

// measuredRSS is the resident memory each platform binary was measured to hold while it works, in MiB, and where the
// figure comes from. A new binary needs its own measurement here before it is deployed.
var measuredRSS = map[string]struct {
	mib    float64
	source string
}{
	// One connection's requests for 5 s (429 from the per-IP limit, 401, 404, 503: no upstream) and 2 s idle, the
	// binary built as the Dockerfile builds it, with deploy's GOMEMLIMIT, one event loop and rate limits: 41.8-42.4 MiB
	// in five runs (24.7 idle).
	"gateway": {42.4, "deploy/README.md \"Memory requests\" (deploy/scripts/gateway_rss.py)"},
	// The user service's work is hashing passwords (argon2id, a 19 MiB block each, one at a time here): 32 clients
	// signing up and logging in (256 hashes), then 2 s idle: 60.6-63.5 MiB in five runs (peak 70.0-70.3, of which
	// 52.7-53.3 anonymous).
	"user": {63.5, "deploy/README.md \"Memory requests\" (deploy/scripts/user_rss.py)"},
	// Order's RSS after 3 s of its GET and POST /api/v1/orders and 2 s idle, the start-up code paged out as the images
	// allow (32.0-32.3 MiB; 48.2-49.0 where the kernel refuses the page-out).
	"order": {32.3, "services/order/README.md \"Start-up time and idle RSS\""},
	// Not measured at work: startup_bench.py loads order's API only. Order's figure stands in for it until it is.
	"payment": {32.3, "order's figure, services/order/README.md \"Start-up time and idle RSS\" (payment's own not measured)"},
	// Largest "RSS before" of the memory table: records flowing to Pulsar, before the outage the table is about.
	"bridge": {122, "bridge/README.md \"Memory\""},
}

// TestPlatformMemoryRequestsHoldTheMeasuredRSS: each platform container's memory request covers the resident memory
// its binary was measured to hold at work. Every one asked 32Mi, while the gateway held 42 MiB after a few seconds of
// requests and the bridge 83-122 MiB with records flowing: the scheduler reserved a third of what the bridge always
// uses, and under node memory pressure the kubelet evicts first the pods furthest above their request (and the kernel's
// OOM killer prefers a Burstable pod with a small request), so the bridge and the gateway went before anything else
// on their node while doing nothing unusual. The eBPF agent has its own test (its maps: TestAgentMemoryRequestHoldsItsTargetsMaps).
func TestPlatformMemoryRequestsHoldTheMeasuredRSS(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			checked := 0
			for _, o := range build(t, dir) {
				spec := podSpec(o)
				if spec == nil || o.Namespace != "shanhai" {
					continue
				}
				for _, c := range append(spec.InitContainers, spec.Containers...) {
					m, ok := measuredRSS[c.Name]
					if !ok {
						t.Errorf("%s %s: container %s has no measured RSS: measure it and add it to measuredRSS", o.Kind, o.Name, c.Name)
						continue
					}
					checked++
					want := int64(math.Ceil(m.mib * (1 << 20)))
					if got := c.Resources.Requests.Memory().Value(); got < want {
						t.Errorf("%s %s: container %s requests %d MiB of memory, under the %.1f MiB it holds at work (%s)",
							o.Kind, o.Name, c.Name, got>>20, m.mib, m.source)
					}
					if lim := c.Resources.Limits.Memory().Value(); lim < want {
						t.Errorf("%s %s: container %s is limited to %d MiB, under the %.1f MiB it holds at work (%s)",
							o.Kind, o.Name, c.Name, lim>>20, m.mib, m.source)
					}
				}
			}
			if checked < len(measuredRSS) {
				t.Errorf("%d platform containers checked, want the %d measured: the Deployments moved, follow them here",
					checked, len(measuredRSS))
			}
		})
	}
}
