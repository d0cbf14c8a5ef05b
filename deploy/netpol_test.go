package deploy

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
)

// TestPlatformAdmitsOnlyNamedPodsFromOtherNamespaces: an ingress rule of the platform's namespaces that admits
// another namespace names the pods in it that need the way in (Prometheus, to scrape). services-ingress and
// agent-scrape admitted every pod of shanhai-infra, Grafana, Kafka and Pulsar included, to every platform port: any of
// them could call the services directly, and the user service believes X-Forwarded-For from the pod network.
func TestPlatformAdmitsOnlyNamedPodsFromOtherNamespaces(t *testing.T) {
	platform := map[string]bool{"shanhai": true, "shanhai-system": true}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			checked := 0
			for _, o := range build(t, dir) {
				np, ok := o.Value.(*networkingv1.NetworkPolicy)
				if !ok || !platform[o.Namespace] {
					continue
				}
				for _, rule := range np.Spec.Ingress {
					for _, peer := range rule.From {
						if peer.NamespaceSelector == nil {
							continue
						}
						checked++
						if ns := peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; ns == o.Namespace {
							continue
						}
						if peer.PodSelector == nil || (len(peer.PodSelector.MatchLabels) == 0 && len(peer.PodSelector.MatchExpressions) == 0) {
							t.Errorf("NetworkPolicy %s/%s admits every pod of namespaces %v: name the pods that need it",
								o.Namespace, o.Name, peer.NamespaceSelector.MatchLabels)
						}
					}
				}
			}
			if checked == 0 {
				t.Fatal("no ingress from another namespace found: the policies moved, follow them here")
			}
		})
	}
}
