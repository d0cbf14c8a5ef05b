package deploy

import (
	"math"
	"testing"
)

// measuredRSS is the resident memory each platform binary was measured to hold while it works, in MiB, the most it
// held at the peak of that work where the peak was measured (0 where not), and where the figures come from. A new
// binary needs its own measurement here before it is deployed.
var measuredRSS = map[string]struct {
	mib, peak float64
	source    string
}{
	// One connection's requests for 5 s (429 from the per-IP limit, 401, 404, 503: no upstream) and 2 s idle, the
	// binary built as the Dockerfile builds it, with deploy's GOMEMLIMIT, one event loop and rate limits: 41.8-42.4 MiB
	// in five runs (24.7 idle).
	"gateway": {42.4, 0, "deploy/README.md \"Memory requests\" (deploy/scripts/gateway_rss.py)"},
	// The user service's work is hashing passwords (argon2id, a 19 MiB block each, one at a time here): 32 clients
	// signing up and logging in (256 hashes), then 2 s idle, with GOMEMLIMIT 76MiB: 83.5-88.8 MiB in eight runs
	// (peak 89.3-94.6, of which 72.4-77.7 anonymous). With 51MiB in a 64Mi limit the peak was 70.0-70.3, past the limit.
	"user": {88.8, 94.6, "deploy/README.md \"Memory requests\" (deploy/scripts/user_rss.py)"},
	// Order's RSS after 3 s of its GET and POST /api/v1/orders and 2 s idle, the start-up code paged out as the images
	// allow (32.0-32.3 MiB; 48.2-49.0 where the kernel refuses the page-out).
	"order": {32.3, 0, "services/order/README.md \"Start-up time and idle RSS\""},
	// Payment's work is charging what JetStream hands it: 2,000 order.created at once, each charged, stored and its
	// result relayed to Kafka, then 2 s idle, with deploy's GOMEMLIMIT (51MiB): 39.8-52.0 MiB 2 s after in ten runs
	// (peak 45.8-54.2, of which 29.6-39.3 anonymous); eight more runs peaked at 47.5-58.4 (31.4-40.4 anonymous).
	// Order's 32.3 MiB stood in for it, under the 40Mi it requested.
	"payment": {52.0, 58.4, "deploy/README.md \"Memory requests\" (deploy/scripts/payment_rss.py)"},
	// Largest "RSS before" of the memory table: records flowing to Pulsar, before the outage the table is about.
	"bridge": {122, 0, "bridge/README.md \"Memory\""},
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

// TestPlatformMemoryLimitsHoldTheMeasuredPeak: where a binary's peak at work was measured, its memory limit holds it,
// in Kubernetes and in compose. The user service's 64Mi limit did not: a burst of log ins took it to 70 MiB of RSS,
// 53-56 of it anonymous, past both the limit and its GOMEMLIMIT (deploy/README.md "Memory requests"). The kernel can
// reclaim the executable's mapped pages at the limit, not the heap's: short of the peak, the container is OOM-killed
// or its binary's pages are read again from disk while it hashes.
func TestPlatformMemoryLimitsHoldTheMeasuredPeak(t *testing.T) {
	check := func(where string, name string, limit int64) {
		m := measuredRSS[name]
		if want := int64(math.Ceil(m.peak * (1 << 20))); limit < want {
			t.Errorf("%s: %s is limited to %d MiB, under its measured peak of %.1f MiB (%s)", where, name, limit>>20, m.peak, m.source)
		}
	}
	peaks := 0
	for name, m := range measuredRSS {
		if m.peak == 0 {
			continue
		}
		peaks++
		s, ok := loadCompose(t).Services[name]
		if !ok || s.Deploy == nil || s.Deploy.Resources.Limits == nil {
			t.Errorf("compose: no service %s with a memory limit", name)
			continue
		}
		check("compose", name, int64(s.Deploy.Resources.Limits.MemoryBytes))
	}
	if peaks == 0 {
		t.Fatal("no measured peak to check")
	}
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			if spec := podSpec(o); spec != nil && o.Namespace == "shanhai" {
				for _, c := range spec.Containers {
					if measuredRSS[c.Name].peak > 0 {
						check(dir+" "+o.Kind+" "+o.Name, c.Name, c.Resources.Limits.Memory().Value())
					}
				}
			}
		}
	}
}
