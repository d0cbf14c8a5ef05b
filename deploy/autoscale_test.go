package deploy

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// TestAutoscaledDeploymentsLeaveReplicasToTheirAutoscaler: a Deployment an autoscaler scales names no replica count
// of its own, unless the autoscaler is pinned to that one count (kind's, at 1). `kubectl apply` sets what the
// manifest says, so every apply of the base (a new image, a changed variable) scaled the gateway and the services
// from however many the autoscaler ran back to 2, terminating the rest under the load that had scaled them, until
// the autoscaler caught up (the Kubernetes documentation's own advice for an HPA: remove spec.replicas).
func TestAutoscaledDeploymentsLeaveReplicasToTheirAutoscaler(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			hpas := map[string]*autoscalingv2.HorizontalPodAutoscaler{}
			for _, o := range objs {
				if h, ok := o.Value.(*autoscalingv2.HorizontalPodAutoscaler); ok && h.Spec.ScaleTargetRef.Kind == "Deployment" {
					hpas[o.Namespace+"/"+h.Spec.ScaleTargetRef.Name] = h
				}
			}
			if len(hpas) == 0 {
				t.Fatal("no autoscaler in the build: the gateway's and services' moved, follow them here")
			}
			for _, o := range objs {
				d, ok := o.Value.(*appsv1.Deployment)
				h := hpas[o.Namespace+"/"+o.Name]
				if !ok || h == nil || d.Spec.Replicas == nil {
					continue
				}
				lo := int32(1)
				if h.Spec.MinReplicas != nil {
					lo = *h.Spec.MinReplicas
				}
				if n := *d.Spec.Replicas; lo != h.Spec.MaxReplicas || n != lo {
					t.Errorf("Deployment %s: replicas %d, while its autoscaler runs %d to %d: each apply scales it back to %d",
						o.Name, n, lo, h.Spec.MaxReplicas, n)
				}
			}
		})
	}
}
