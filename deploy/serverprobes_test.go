package deploy

import (
	"net/url"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// serverProbes are the paths a server answers for liveness (restart me) and readiness (send me traffic), where it
// tells the two apart; the probes must ask those, not one check for both. since is the first release serving them:
// an image pinned below it answers 404, and its pod is restarted for ever.
var serverProbes = map[string]struct{ liveness, readiness, since string }{
	// /health fails on a NOSPACE alarm, without a leader and on a slow linearizable read (a loaded node: kind starting
	// Kafka and Pulsar beside it): a restart cures none of them, and a NOSPACE etcd out of its Service cannot serve
	// the deletes that end the alarm. 3.5.11 and later serve /livez (a local read) and /readyz (NOSPACE left out; a
	// linearizable read still, so no leader still takes it out of its Service), as kubeadm probes its etcd
	// (kubernetes/kubeadm#3039; the 3.5 changelog first said 3.5.12, etcd-io/etcd#17678 corrected it).
	"quay.io/coreos/etcd:": {"/livez", "/readyz", "3.5.11"},
	// /-/ready is 503 until the TSDB has replayed its WAL, which the emptyDir keeps across a container restart: as
	// liveness it would restart a Prometheus still replaying, to replay again. /-/healthy answers once it runs.
	"prom/prometheus:": {"/-/healthy", "/-/ready", ""},
	// nats-server 2.14.9 (server.go Start) recovers every stream and consumer of a single server before it opens its
	// client port, and every /healthz first asks for that port, so none passes mid-recovery. What the variants then
	// tell apart: js-enabled-only (which both probes and compose asked) passes once JetStream is on; the whole
	// /healthz also checks (monitor.go healthz) that each stream in the store directory was recovered and has no
	// write error: a stream that failed to load is logged and skipped, and the server started ready without it.
	// Liveness asks js-server-only (the listeners): neither a lost stream nor its data comes back with a restart.
	"nats:": {"/healthz?js-server-only=true", "/healthz", ""},
}

// composeReadiness is, by compose service, the image of serverProbes whose readiness its healthcheck asks: compose
// has one check, which gates the services depending on it as readiness does.
var composeReadiness = map[string]string{"nats": "nats:"}

// TestComposeServersHealthchecksAskTheirReadiness: see composeReadiness.
func TestComposeServersHealthchecksAskTheirReadiness(t *testing.T) {
	p := loadCompose(t)
	for name, image := range composeReadiness {
		s, ok := p.Services[name]
		if !ok {
			t.Errorf("compose runs no %s service", name)
			continue
		}
		want := serverProbes[image].readiness
		var got []string
		if s.HealthCheck != nil {
			for _, arg := range s.HealthCheck.Test {
				if u, err := url.Parse(arg); err == nil && u.Scheme == "http" {
					got = append(got, u.RequestURI())
				}
			}
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("compose %s: healthcheck asks %q, want %q only", name, got, want)
		}
	}
}

// TestServersProbesAskTheirOwnLivenessAndReadiness: see serverProbes.
func TestServersProbesAskTheirOwnLivenessAndReadiness(t *testing.T) {
	found := map[string]bool{}
	eachContainer(t, func(dir string, o object, c corev1.Container) {
		for image, want := range serverProbes {
			if !strings.HasPrefix(c.Image, image) {
				continue
			}
			found[image] = true
			if tag := strings.TrimPrefix(c.Image, image); want.since != "" && !atLeast(tag, want.since) {
				t.Errorf("%s: %s %s: image %s, want %s or later for its probes' paths", dir, o.Kind, o.Name, c.Image, want.since)
			}
			if got := probePath(c.LivenessProbe); got != want.liveness {
				t.Errorf("%s: %s %s: liveness probe asks %q, want %q", dir, o.Kind, o.Name, got, want.liveness)
			}
			if got := probePath(c.ReadinessProbe); got != want.readiness {
				t.Errorf("%s: %s %s: readiness probe asks %q, want %q", dir, o.Kind, o.Name, got, want.readiness)
			}
		}
	})
	for image := range serverProbes {
		if !found[image] {
			t.Errorf("no %s container in any build: its image moved, follow it here", image)
		}
	}
}

// atLeast reports whether an image tag (v3.5.17, 3.5.17-0, v3.5.17@sha256:...) names release min or a later one;
// a tag it cannot read is not.
func atLeast(tag, min string) bool {
	tag, _, _ = strings.Cut(tag, "@")
	tag, _, _ = strings.Cut(strings.TrimPrefix(tag, "v"), "-")
	got, want := strings.Split(tag, "."), strings.Split(min, ".")
	if len(got) != len(want) {
		return false
	}
	for i := range want {
		g, err := strconv.Atoi(got[i])
		if err != nil {
			return false
		}
		if w, _ := strconv.Atoi(want[i]); g != w {
			return g > w
		}
	}
	return true
}

// probePath is the path an HTTP probe asks, empty for none or another kind of probe.
func probePath(p *corev1.Probe) string {
	if p == nil || p.HTTPGet == nil {
		return ""
	}
	return p.HTTPGet.Path
}
