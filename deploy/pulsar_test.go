package deploy

import (
	"net/url"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// pulsarAdvertised is the configuration key of the address a Pulsar broker names in its topic lookups, as the
// image's bin/apply-config-from-env.py takes it from the environment.
const pulsarAdvertised = "PULSAR_PREFIX_advertisedAddress"

// bridgePulsarHost is the host of the bridge's PULSAR_URL: where its client sends its lookups.
func bridgePulsarHost(t *testing.T, where, pulsarURL string) string {
	t.Helper()
	u, err := url.Parse(pulsarURL)
	if err != nil || u.Hostname() == "" {
		t.Fatalf("%s: the bridge's PULSAR_URL %q names no host", where, pulsarURL)
	}
	return u.Hostname()
}

// TestPulsarAdvertisesAnAddressItsClientsReach: a client looks a topic up at PULSAR_URL and then connects to the
// broker URL the answer names, built from the broker's advertisedAddress (pulsar-client-go dials the lookup's
// brokerServiceUrl unless the answer says to go through a proxy, which a standalone never does). With none set,
// `pulsar standalone` advertises "localhost" (PulsarStandaloneStarter, 4.0), so the bridge was sent to port 6650 of
// its own container or pod: it looked healthy (its readiness check asks only for a topic's partitions, which the
// URL's broker answers itself) while every Pulsar producer failed to connect and leg B archived nothing.
//
// In compose the broker advertises the service name the bridge dials, which every container resolves. In Kubernetes
// it advertises its pod's IP: the Service's name would do for the bridge, but the broker also calls its own admin API
// at that address while it starts, and a Service has no endpoint for a pod that is not ready yet.
func TestPulsarAdvertisesAnAddressItsClientsReach(t *testing.T) {
	p := loadCompose(t)
	bridge, pulsar := p.Services["bridge"], p.Services["pulsar"]
	host := bridgePulsarHost(t, "compose", value(bridge.Environment["PULSAR_URL"]))
	if _, ok := p.Services[host]; !ok {
		t.Errorf("compose: the bridge's PULSAR_URL names %s, which is no service", host)
	}
	if got := value(pulsar.Environment[pulsarAdvertised]); got != host {
		t.Errorf("compose: Pulsar's %s is %q; want %q, the host the bridge's PULSAR_URL names (unset, standalone advertises localhost)",
			pulsarAdvertised, got, host)
	}

	objs := build(t, "k8s/overlays/kind")
	var broker *corev1.Container
	for _, o := range objs {
		if d, ok := o.Value.(*appsv1.Deployment); ok && o.Name == "pulsar" {
			broker = &d.Spec.Template.Spec.Containers[0]
		}
	}
	if broker == nil {
		t.Fatal("kind overlay: no pulsar Deployment")
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range broker.Env {
		env[e.Name] = e
	}
	adv, ok := env[pulsarAdvertised]
	if !ok {
		t.Fatalf("Kubernetes: Pulsar sets no %s, so standalone advertises localhost to the bridge", pulsarAdvertised)
	}
	ref := dependentRef.FindStringSubmatch(adv.Value)
	if ref == nil || ref[0] != adv.Value {
		t.Fatalf("Kubernetes: Pulsar's %s is %q; want $(VAR) of a variable holding the pod's IP", pulsarAdvertised, adv.Value)
	}
	podIP, ok := env[ref[1]]
	if !ok || podIP.ValueFrom == nil || podIP.ValueFrom.FieldRef == nil || podIP.ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("Kubernetes: Pulsar's %s refers to %s, which is not the pod's IP (fieldRef status.podIP)", pulsarAdvertised, ref[1])
	}
	for _, e := range broker.Env {
		if e.Name == pulsarAdvertised {
			t.Errorf("Kubernetes: %s comes before %s, so the kubelet leaves $(%s) unexpanded", pulsarAdvertised, ref[1], ref[1])
			break
		}
		if e.Name == ref[1] {
			break
		}
	}
}
