package deploy

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestGatewayExposedToClientsBelievesNoForwardedFor: where the gateway's Service takes clients' connections itself
// (NodePort or LoadBalancer: kind maps node port 30080 to the host), nothing in the cluster is a proxy in front of
// it, so it believes no X-Forwarded-For (GATEWAY_TRUSTED_PROXIES unset or empty), and the Service keeps the client's
// address (externalTrafficPolicy Local). The kind build kept the base's 10.0.0.0/8 under the default Cluster policy,
// where kube-proxy masquerades a node port's traffic to the node's address on the pod's side (kindnet's 10.244.0.1),
// one of the trusted networks: a client's own X-Forwarded-For then named its address, so a client choosing a new one
// per request passed the per-IP and log-in limits, and the gateway passed the forged address on to the user
// service, whose log-in guard believes the gateway's chain.
func TestGatewayExposedToClientsBelievesNoForwardedFor(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			var exposed *corev1.Service
			for _, o := range objs {
				if s, ok := o.Value.(*corev1.Service); ok && o.Name == "gateway" {
					exposed = s
				}
			}
			if exposed == nil {
				t.Fatal("no gateway Service: follow it here")
			}
			if exposed.Spec.Type != corev1.ServiceTypeNodePort && exposed.Spec.Type != corev1.ServiceTypeLoadBalancer {
				return // reached through the proxy an overlay puts in front of it (deploy/README.md)
			}
			if exposed.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
				t.Errorf("gateway Service is %s with externalTrafficPolicy %q: kube-proxy replaces every client's address "+
					"with the node's, want Local", exposed.Spec.Type, exposed.Spec.ExternalTrafficPolicy)
			}
			for _, o := range objs {
				d, ok := o.Value.(*appsv1.Deployment)
				if !ok || o.Name != "gateway" {
					continue
				}
				for _, e := range d.Spec.Template.Spec.Containers[0].Env {
					if e.Name == "GATEWAY_TRUSTED_PROXIES" && e.Value != "" {
						t.Errorf("gateway Service is %s, so no proxy stands in front of it, but GATEWAY_TRUSTED_PROXIES=%s: "+
							"a client's X-Forwarded-For from those addresses is believed", exposed.Spec.Type, e.Value)
					}
				}
			}
		})
	}
}
