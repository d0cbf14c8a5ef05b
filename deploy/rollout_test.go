package deploy

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// endpointsGrace is how long a terminating pod keeps accepting connections before it is told to stop. The kubelet
// sends SIGTERM while the endpoint controller and every node's kube-proxy are still taking the pod out of its
// Services, and the gateway closes its listener on SIGTERM (pkg/server after a 1 s deregistration delay meant for
// etcd watchers, not for kube-proxy): without the wait, connections routed there meanwhile were refused.
const endpointsGrace = 5

// readyTimeout is pkg/server's Options.ReadyTimeout default: /readyz gives its checks that long before it answers.
const readyTimeout = 2 * time.Second

// TestPodsOutliveTheirEndpointsAndAnswerReadiness: every platform Deployment behind a Service waits endpointsGrace
// seconds in a preStop sleep (no shell in distroless: the kubelet's own sleep action, Kubernetes 1.30 and later,
// kind-config.yaml pins 1.32) and its grace period holds that wait and the stop after it (stopBudget: the drain, the
// consumers' and relays' stop and the graces after it; the drain alone left 15 s for payment's 45 s); every
// readiness probe waits longer than /readyz takes (readyTimeout) to answer, so a check taking more than 1 s (the
// probe's default) is not a failed probe while the binary would answer 200, and a failing one is reported with the
// 503 that names it rather than as a timeout.
func TestPodsOutliveTheirEndpointsAndAnswerReadiness(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			fronted := map[string]bool{} // namespace/app name of pods some non-headless Service routes to
			for _, o := range objs {
				if s, ok := o.Value.(*corev1.Service); ok && s.Spec.ClusterIP != corev1.ClusterIPNone {
					fronted[o.Namespace+"/"+s.Spec.Selector["app.kubernetes.io/name"]] = true
				}
			}
			checked := 0
			for _, o := range objs {
				d, ok := o.Value.(*appsv1.Deployment)
				if !ok || d.Labels["app.kubernetes.io/part-of"] != "shanhai" {
					continue
				}
				spec := d.Spec.Template.Spec
				c := spec.Containers[0]
				if p := c.ReadinessProbe; p == nil || time.Duration(p.TimeoutSeconds)*time.Second <= readyTimeout {
					t.Errorf("%s: readiness probe must wait longer than /readyz's %v", o.Name, readyTimeout)
				}
				if !fronted[o.Namespace+"/"+d.Spec.Template.Labels["app.kubernetes.io/name"]] {
					continue
				}
				checked++
				var sleep int64
				if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
					sleep = c.Lifecycle.PreStop.Sleep.Seconds
				}
				if sleep < endpointsGrace {
					t.Errorf("%s: preStop sleeps %d s, want at least %d s: a Service routes to it until its endpoint is gone",
						o.Name, sleep, endpointsGrace)
				}
				shutdown := ""
				for _, e := range c.Env {
					if e.Name == "SHUTDOWN_TIMEOUT" {
						shutdown = e.Value
					}
				}
				budget := stopBudget(t, o.Name, shutdownTimeout(t, o.Name, shutdown))
				grace := int64(30) // the API's default
				if spec.TerminationGracePeriodSeconds != nil {
					grace = *spec.TerminationGracePeriodSeconds
				}
				// Rounded up: the grace period is in whole seconds.
				if need := sleep + int64((budget+time.Second-1)/time.Second); grace < need {
					t.Errorf("%s: terminationGracePeriodSeconds %d, want at least %d (preStop sleep + stop budget %v)",
						o.Name, grace, need, budget)
				}
			}
			if checked == 0 {
				t.Fatal("no Deployment behind a Service checked: follow them here")
			}
		})
	}
}
