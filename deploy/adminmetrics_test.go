package deploy

import (
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestMetricsOfThePublicDoorStayInside: a binary with a MetricsPort (the gateway) listens for Prometheus there
// (ADMIN_ADDR), and that port is neither published by compose nor exposed by a Service with an address, nor open to
// any source; in Kubernetes the scrape annotation names it and policies admit the Prometheus pods alone to it (pprof
// shares the listener). The
// gateway served /metrics on its public port, so anyone who could reach it read the platform's series.
func TestMetricsOfThePublicDoorStayInside(t *testing.T) {
	p := loadCompose(t, "load")
	checked := 0
	for _, b := range Binaries {
		if b.MetricsPort == 0 {
			continue
		}
		checked++
		port := strconv.Itoa(b.MetricsPort)
		s, ok := p.Services[b.Name]
		if !ok {
			t.Fatalf("compose: no service %s", b.Name)
		}
		if addr := value(s.Environment["ADMIN_ADDR"]); !strings.HasSuffix(addr, ":"+port) || strings.HasPrefix(addr, "127.") {
			t.Errorf("compose %s: ADMIN_ADDR=%q, want Prometheus's way to /metrics at port %s", b.Name, addr, port)
		}
		for _, sp := range s.Ports {
			if sp.Target == uint32(b.MetricsPort) {
				t.Errorf("compose %s publishes its metrics port %s", b.Name, port)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no binary has a MetricsPort: the test checks nothing")
	}

	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			pods, cms := k8sWorkloads(t, objs)
			for _, b := range Binaries {
				w, ok := pods[b.Name]
				if !ok || b.MetricsPort == 0 {
					continue
				}
				port := strconv.Itoa(b.MetricsPort)
				c := w.spec.Containers[0]
				if addr := containerEnv(t, b.Name, w, cms)["ADMIN_ADDR"]; !strings.HasSuffix(addr, ":"+port) || strings.HasPrefix(addr, "127.") {
					t.Errorf("%s: ADMIN_ADDR=%q, want Prometheus's way to /metrics at port %s", b.Name, addr, port)
				}
				names := map[string]bool{port: true} // the ways a Service's targetPort can name it
				for _, cp := range c.Ports {
					if cp.ContainerPort == int32(b.MetricsPort) && cp.Name != "" {
						names[cp.Name] = true
					}
				}
				if len(names) != 2 {
					t.Errorf("%s: the container declares no named port %s", b.Name, port)
				}
				podLabels := labels.Set(podTemplateLabels(t, objs, b.Name))
				for _, o := range objs {
					switch v := o.Value.(type) {
					case *appsv1.Deployment:
						if o.Name == b.Name && v.Spec.Template.Annotations["prometheus.io/port"] != port {
							t.Errorf("%s: annotation prometheus.io/port %q, want %s", b.Name, v.Spec.Template.Annotations["prometheus.io/port"], port)
						}
					case *corev1.Service:
						if o.Namespace != w.namespace || v.Spec.ClusterIP == corev1.ClusterIPNone || len(v.Spec.Selector) == 0 ||
							!labels.SelectorFromSet(v.Spec.Selector).Matches(podLabels) {
							continue
						}
						for _, sp := range v.Spec.Ports {
							if names[sp.TargetPort.String()] || (sp.TargetPort.IntValue() == 0 && sp.Port == int32(b.MetricsPort)) {
								t.Errorf("Service %s exposes %s's metrics port %s", o.Name, b.Name, port)
							}
						}
					}
				}
				admitted := false
				for _, o := range objs {
					np, ok := o.Value.(*networkingv1.NetworkPolicy)
					if !ok || o.Namespace != w.namespace {
						continue
					}
					sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
					if err != nil || !sel.Matches(podLabels) {
						continue
					}
					for _, rule := range np.Spec.Ingress {
						opens := len(rule.Ports) == 0
						for _, rp := range rule.Ports {
							opens = opens || (rp.Port != nil && names[rp.Port.String()])
						}
						if !opens {
							continue
						}
						if len(rule.From) == 0 {
							t.Errorf("NetworkPolicy %s opens %s's metrics port %s to any source", o.Name, b.Name, port)
						}
						// pprof shares the listener: Prometheus alone, not every platform pod.
						for _, peer := range rule.From {
							if peer.PodSelector != nil && peer.PodSelector.MatchLabels["app.kubernetes.io/name"] == "prometheus" {
								admitted = true
							} else {
								t.Errorf("NetworkPolicy %s admits %s to %s's metrics port %s: Prometheus alone",
									o.Name, metav1.FormatLabelSelector(peer.PodSelector), b.Name, port)
							}
						}
					}
				}
				if !admitted {
					t.Errorf("no NetworkPolicy admits Prometheus to %s's metrics port %s", b.Name, port)
				}
			}
		})
	}
}
