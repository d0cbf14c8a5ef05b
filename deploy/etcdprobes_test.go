package deploy

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestEtcdProbesAskItsOwnLivenessAndReadiness: the kubelet restarts etcd only when /livez fails, and takes it out of
// its Service when /readyz does. Both probes asked /health, which fails while a NOSPACE alarm is raised, while there
// is no leader, and while a linearizable read takes longer than its timeout (a loaded node: kind starting Kafka and
// Pulsar beside it): a restart cures none of them, and a NOSPACE etcd out of its Service cannot serve the deletes
// and compaction that end the alarm. etcd 3.5.12 and later serve /livez (the member itself answers a local read)
// and /readyz (which leaves NOSPACE out), as kubeadm's own etcd probes ask (kubernetes/kubeadm#3039).
func TestEtcdProbesAskItsOwnLivenessAndReadiness(t *testing.T) {
	found := false
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			spec := podSpec(o)
			if spec == nil {
				continue
			}
			for _, c := range spec.Containers {
				if !strings.HasPrefix(c.Image, "quay.io/coreos/etcd:") {
					continue
				}
				found = true
				for _, p := range []struct{ name, want, path string }{
					{"liveness", "/livez", probePath(c.LivenessProbe)},
					{"readiness", "/readyz", probePath(c.ReadinessProbe)},
				} {
					if p.path != p.want {
						t.Errorf("%s: %s %s: %s probe asks %q, want %q", dir, o.Kind, o.Name, p.name, p.path, p.want)
					}
				}
			}
		}
	}
	if !found {
		t.Fatal("no etcd container in the kind build: its image moved, follow it here")
	}
}

// probePath is the path an HTTP probe asks, empty for none or another kind of probe.
func probePath(p *corev1.Probe) string {
	if p == nil || p.HTTPGet == nil {
		return ""
	}
	return p.HTTPGet.Path
}
