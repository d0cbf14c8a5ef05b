package deploy

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TestInfrastructureAdmitsWhatThePlatformUsesAndNoMore: in the kind build, under its NetworkPolicies (evaluated
// here as an enforcing CNI does: a pod selected by a policy of a direction takes only what one of them allows, and a
// connection needs the source's egress and the destination's ingress), each platform binary reaches every
// infrastructure Service its own configuration points it at, on that port (the saga's flows: order and payment to
// PostgreSQL, Kafka and NATS, the bridge to Kafka, NATS and Pulsar, the gateway to etcd and Redis, every binary to
// the OpenTelemetry Collector), and no other infrastructure pod at all. infra-ingress admitted every pod of the
// platform's namespace to every infrastructure port: the gateway, the one pod that takes the internet's requests,
// could open PostgreSQL, Kafka, Pulsar's admin API, Prometheus, Grafana and every trace in Jaeger.
// It also checks that the gateway reaches the services its routes name, that every binary reaches the platform
// Services its configuration names (the user service's key set), and that Prometheus reaches every target of its
// configuration (the gateway's admin port included).
func TestInfrastructureAdmitsWhatThePlatformUsesAndNoMore(t *testing.T) {
	const infra = "shanhai-infra"
	objs := build(t, "k8s/overlays/kind")
	c := newCluster(objs)
	pods, cms := k8sWorkloads(t, objs)
	secretValues := kindUpSecrets(t)
	// A host of the infrastructure namespace and its port, as the platform's variables name them.
	infraAddr := regexp.MustCompile(`([a-z0-9-]+)\.` + regexp.QuoteMeta(infra) + `\.svc(?:\.cluster\.local)?:(\d+)`)
	checked := 0
	for _, b := range Binaries {
		w, ok := pods[b.Name]
		if !ok || w.namespace == infra {
			continue
		}
		src, ok := c.pod(w.namespace, b.Name)
		if !ok {
			t.Fatalf("%s: no pod in the build", b.Name)
		}
		read, _ := configVars(t, b)
		env := kubeletEnv(t, objs, cms, secretValues, w)
		need := map[string]bool{} // service/port
		for name, v := range env {
			_, reads := read[name]
			// OTEL_* are read by pkg/telemetry, which every binary with OTLP settings sets up.
			if !reads && !strings.HasPrefix(name, "OTEL_") {
				continue
			}
			for _, m := range infraAddr.FindAllStringSubmatch(v, -1) {
				need[m[1]+"/"+m[2]] = true
			}
		}
		for _, svc := range c.services(infra) {
			for _, sp := range svc.Spec.Ports {
				key := svc.Name + "/" + strconv.Itoa(int(sp.Port))
				for _, dst := range c.selected(infra, svc.Spec.Selector) {
					checked++
					port := dst.resolve(sp.TargetPort.String(), sp.Port)
					allowed := c.allowed(src, dst, port)
					switch {
					case need[key] && !allowed:
						t.Errorf("%s cannot reach %s (pod %s, port %d), which its configuration points it at", b.Name, key, dst.name, port)
					case !need[key] && allowed:
						t.Errorf("%s may reach %s (pod %s, port %d), which it does not use", b.Name, key, dst.name, port)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no platform pod and infrastructure Service found in the kind build: follow them here")
	}

	// Within the platform: the gateway reaches each service its route table names, at the address the service
	// registers (its pod's, on its HTTP port), and every binary the platform Services its configuration names
	// (JWKS_URL: the user service's key set).
	platformAddr := regexp.MustCompile(`([a-z0-9-]+)\.shanhai\.svc(?:\.cluster\.local)?:(\d+)`)
	for _, b := range Binaries {
		w, ok := pods[b.Name]
		if !ok || w.namespace != "shanhai" {
			continue
		}
		src, _ := c.pod(w.namespace, b.Name)
		read, _ := configVars(t, b)
		env := kubeletEnv(t, objs, cms, secretValues, w)
		type flow struct {
			to   string
			port int32
		}
		flows := map[flow]bool{}
		for name, v := range env {
			if _, reads := read[name]; reads {
				for _, m := range platformAddr.FindAllStringSubmatch(v, -1) {
					port, _ := strconv.Atoi(m[2])
					flows[flow{m[1], int32(port)}] = true
				}
			}
		}
		if routes, ok := read["GATEWAY_ROUTES"]; ok {
			if v, set := env["GATEWAY_ROUTES"]; set {
				routes = v
			}
			for _, r := range strings.Split(routes, ",") {
				if _, svc, ok := strings.Cut(r, "="); ok {
					flows[flow{svc, int32(binary(t, svc).Port)}] = true
				}
			}
		}
		for f := range flows {
			dst, ok := c.pod("shanhai", f.to)
			if !ok {
				t.Errorf("%s: its configuration names %s, which is no platform pod", b.Name, f.to)
				continue
			}
			if !c.allowed(src, dst, f.port) {
				t.Errorf("%s cannot reach %s on port %d, which its configuration points it at", b.Name, f.to, f.port)
			}
		}
		// And no other platform port: the gateway's public one aside (open to all, netpol_test.go), a binary
		// reaches another only where its configuration sends it.
		for _, d := range Binaries {
			dst, ok := c.pod("shanhai", d.Name)
			if !ok || d.Name == b.Name {
				continue
			}
			ports := map[int32]bool{int32(d.Port): true, int32(d.ScrapePort()): true}
			for _, p := range dst.ports {
				ports[p] = true
			}
			for port := range ports {
				public := d.Name == "gateway" && port == int32(d.Port)
				if !public && !flows[flow{d.Name, port}] && c.allowed(src, dst, port) {
					t.Errorf("%s may reach %s on port %d, which its configuration does not point it at", b.Name, d.Name, port)
				}
			}
		}
	}

	prometheus, ok := c.pod(infra, "prometheus")
	if !ok {
		t.Fatal("no Prometheus pod in the kind build")
	}
	for target := range scrapeTargets(t, "k8s/components/infra/resources/prometheus.yml") {
		host, p, _ := strings.Cut(target, ":")
		port, _ := strconv.Atoi(p)
		name, rest, _ := strings.Cut(host, ".")
		ns, _, _ := strings.Cut(rest, ".")
		svc, ok := c.service(ns, name)
		if !ok {
			t.Errorf("Prometheus scrapes %s, which is no Service of the build", target)
			continue
		}
		for _, dst := range c.selected(ns, svc.Spec.Selector) {
			if !c.allowed(prometheus, dst, int32(port)) {
				t.Errorf("Prometheus cannot scrape %s (pod %s/%s, port %d)", target, ns, dst.name, port)
			}
		}
	}
}

// cluster is a build's pods, Services, namespaces and NetworkPolicies, enough to say which connections the
// policies allow.
type cluster struct {
	pods       []netPod
	svcs       map[string]*corev1.Service // namespace/name
	nsLabels   map[string]labels.Set
	policies   map[string][]*networkingv1.NetworkPolicy // by namespace
	namespaces []string
}

// netPod is a workload's pod template as a NetworkPolicy sees it.
type netPod struct {
	namespace, name string
	labels          labels.Set
	ports           map[string]int32 // container port names
}

// resolve gives a Service's targetPort (a name, a number, or empty for the port itself) as a number on p.
func (p netPod) resolve(target string, port int32) int32 {
	if target == "" || target == "0" {
		return port
	}
	if n, err := strconv.Atoi(target); err == nil {
		return int32(n)
	}
	return p.ports[target]
}

func newCluster(objs []object) *cluster {
	c := &cluster{svcs: map[string]*corev1.Service{}, nsLabels: map[string]labels.Set{}, policies: map[string][]*networkingv1.NetworkPolicy{}}
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.Namespace:
			set := labels.Set{"kubernetes.io/metadata.name": o.Name}
			for k, l := range v.Labels {
				set[k] = l
			}
			c.nsLabels[o.Name] = set
			c.namespaces = append(c.namespaces, o.Name)
		case *corev1.Service:
			c.svcs[o.Namespace+"/"+o.Name] = v
		case *networkingv1.NetworkPolicy:
			c.policies[o.Namespace] = append(c.policies[o.Namespace], v)
		case *appsv1.Deployment, *appsv1.DaemonSet, *batchv1.Job:
			var meta metav1.ObjectMeta
			switch v := v.(type) {
			case *appsv1.Deployment:
				meta = v.Spec.Template.ObjectMeta
			case *appsv1.DaemonSet:
				meta = v.Spec.Template.ObjectMeta
			case *batchv1.Job:
				meta = v.Spec.Template.ObjectMeta
			}
			p := netPod{namespace: o.Namespace, name: o.Name, labels: labels.Set(meta.Labels), ports: map[string]int32{}}
			for _, ct := range podSpec(o).Containers {
				for _, cp := range ct.Ports {
					if cp.Name != "" {
						p.ports[cp.Name] = cp.ContainerPort
					}
				}
			}
			c.pods = append(c.pods, p)
		}
	}
	return c
}

func (c *cluster) pod(namespace, name string) (netPod, bool) {
	for _, p := range c.pods {
		if p.namespace == namespace && p.name == name {
			return p, true
		}
	}
	return netPod{}, false
}

func (c *cluster) service(namespace, name string) (*corev1.Service, bool) {
	s, ok := c.svcs[namespace+"/"+name]
	return s, ok
}

// services are namespace's Services with a selector, by name.
func (c *cluster) services(namespace string) []*corev1.Service {
	var out []*corev1.Service
	for key, s := range c.svcs {
		if strings.HasPrefix(key, namespace+"/") && len(s.Spec.Selector) > 0 {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// selected are the pods of namespace a Service's selector picks.
func (c *cluster) selected(namespace string, selector map[string]string) []netPod {
	var out []netPod
	for _, p := range c.pods {
		if p.namespace == namespace && labels.SelectorFromSet(selector).Matches(p.labels) {
			out = append(out, p)
		}
	}
	return out
}

// allowed says whether a connection from src to dst's port passes src's egress and dst's ingress policies.
func (c *cluster) allowed(src, dst netPod, port int32) bool {
	return c.admits(src, dst, port, networkingv1.PolicyTypeEgress) && c.admits(dst, src, port, networkingv1.PolicyTypeIngress)
}

// admits applies the policies of self's namespace in direction dir to a connection with peer on port (dst's port,
// whichever side self is). A pod no policy of that direction selects is not isolated in it.
func (c *cluster) admits(self, peer netPod, port int32, dir networkingv1.PolicyType) bool {
	isolated := false
	for _, np := range c.policies[self.namespace] {
		if !matches(&np.Spec.PodSelector, self.labels) || !hasType(np, dir) {
			continue
		}
		isolated = true
		if dir == networkingv1.PolicyTypeIngress {
			for _, r := range np.Spec.Ingress {
				if c.peersMatch(r.From, self.namespace, peer) && portsMatch(r.Ports, self, port) {
					return true
				}
			}
		} else {
			for _, r := range np.Spec.Egress {
				if c.peersMatch(r.To, self.namespace, peer) && portsMatch(r.Ports, peer, port) {
					return true
				}
			}
		}
	}
	return !isolated
}

func hasType(np *networkingv1.NetworkPolicy, dir networkingv1.PolicyType) bool {
	if len(np.Spec.PolicyTypes) == 0 {
		return dir == networkingv1.PolicyTypeIngress || len(np.Spec.Egress) > 0
	}
	for _, t := range np.Spec.PolicyTypes {
		if t == dir {
			return true
		}
	}
	return false
}

// peersMatch says whether a rule's peers (none: any) take pod, for a policy of namespace.
func (c *cluster) peersMatch(peers []networkingv1.NetworkPolicyPeer, namespace string, pod netPod) bool {
	if len(peers) == 0 {
		return true
	}
	for _, p := range peers {
		if p.IPBlock != nil {
			continue // the platform's policies name no addresses; pods' addresses are not known here
		}
		nsOK := pod.namespace == namespace
		if p.NamespaceSelector != nil {
			nsOK = matches(p.NamespaceSelector, c.nsLabels[pod.namespace])
		}
		podOK := p.PodSelector == nil || matches(p.PodSelector, pod.labels)
		if nsOK && podOK {
			return true
		}
	}
	return false
}

// portsMatch says whether a rule's ports (none: all) include port, a named one resolved on the destination pod.
func portsMatch(ports []networkingv1.NetworkPolicyPort, dst netPod, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		if p.Port == nil || dst.resolve(p.Port.String(), 0) == port {
			return true
		}
		if p.EndPort != nil && p.Port.IntValue() <= int(port) && int(port) <= int(*p.EndPort) {
			return true
		}
	}
	return false
}

func matches(sel *metav1.LabelSelector, set labels.Set) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		panic(fmt.Sprintf("label selector %v: %v", sel, err))
	}
	return s.Matches(set)
}
