package deploy

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// TestOnlyTheGatewayIsOpenToAll: the one ingress rule admitting any source is the gateway's, the platform's door.
// ui-ingress opened Grafana and Jaeger (every trace, unauthenticated) to every pod of the cluster and anything routed
// to it, for kubectl port-forward, which needs no rule: the kubelet's runtime dials the port from inside the pod's
// network namespace, on its loopback, where no NetworkPolicy applies.
func TestOnlyTheGatewayIsOpenToAll(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			open := 0
			for _, o := range build(t, dir) {
				np, ok := o.Value.(*networkingv1.NetworkPolicy)
				if !ok {
					continue
				}
				for _, rule := range np.Spec.Ingress {
					if len(rule.From) > 0 {
						continue
					}
					open++
					sel := np.Spec.PodSelector
					if o.Namespace != "shanhai" || len(sel.MatchExpressions) > 0 || len(sel.MatchLabels) != 1 ||
						sel.MatchLabels["app.kubernetes.io/name"] != "gateway" {
						t.Errorf("NetworkPolicy %s/%s admits any source to pods %v: only the gateway takes clients",
							o.Namespace, o.Name, metav1.FormatLabelSelector(&sel))
					}
				}
			}
			if open == 0 {
				t.Fatal("no ingress open to all, not even the gateway's: the policies moved, follow them here")
			}
		})
	}
}
