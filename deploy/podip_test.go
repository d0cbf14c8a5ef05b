package deploy

import (
	"os"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestPodIPAndPortJoinOnlyOnIPv4Pods: the manifests join the downward API's pod IP and a port as "$(POD_IP):8081"
// (the services' ADVERTISE_ADDR), which is an address only while pod IPs are IPv4. An IPv6 pod IP gives
// "fd00::5:8081", which the services refuse at start (pkg/discovery wants host:port, an IPv6 host in brackets), and
// Kubernetes' variable expansion cannot add brackets for one family only. kind's cluster is IPv4: its ipFamily
// (kind's default, ipv4) and its podSubnet. Making it IPv6 or dual-stack with IPv6 first needs the services to take
// the pod IP and port apart (deploy/README.md, "IPv6").
func TestPodIPAndPortJoinOnlyOnIPv4Pods(t *testing.T) {
	joined := false
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			if spec := podSpec(o); spec != nil {
				for _, c := range spec.Containers {
					for _, e := range c.Env {
						joined = joined || strings.Contains(e.Value, "$(POD_IP):")
					}
				}
			}
		}
	}
	if !joined {
		t.Skip("no manifest joins $(POD_IP) and a port: nothing depends on the pods' address family")
	}
	b, err := os.ReadFile("k8s/kind-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Networking struct {
			IPFamily string `json:"ipFamily"`
		} `json:"networking"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("kind-config.yaml: %v", err)
	}
	if family := cfg.Networking.IPFamily; family != "" && family != "ipv4" {
		t.Errorf("kind-config.yaml: ipFamily %s, but the manifests' $(POD_IP):<port> is an address for IPv4 pods only", family)
	}
	if p := kindPodSubnet(t); !p.Addr().Is4() {
		t.Errorf("kind-config.yaml: podSubnet %s is not IPv4, but the manifests' $(POD_IP):<port> is an address for IPv4 pods only", p)
	}
}

// TestIPv6NotesNameEveryIPv4OnlyListener: README's "IPv6" paragraph, which says what an overlay for IPv6 pods must
// change, names every workload of the kind build that listens on 0.0.0.0, IPv4's wildcard: on an IPv6 pod nothing
// reaches it, neither clients through the Service nor the kubelet's probes (a listener on "[::]:<port>" or ":<port>"
// takes both families). The paragraph named ADVERTISE_ADDR and Pulsar alone, so an overlay that followed it still
// had etcd refusing every client and the Collector, whose OTLP receivers and health_check bind 0.0.0.0, refusing
// spans and its probes, never ready.
func TestIPv6NotesNameEveryIPv4OnlyListener(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, notes, ok := strings.Cut(string(readme), "**IPv6.**")
	if !ok {
		t.Fatal(`README.md has no "**IPv6.**" paragraph`)
	}
	notes, _, _ = strings.Cut(notes, "\n\n")

	objs := build(t, "k8s/overlays/kind")
	ipv4Only := map[string]bool{} // ConfigMap name: its data binds 0.0.0.0
	for _, o := range objs {
		if cm, ok := o.Value.(*corev1.ConfigMap); ok {
			for _, v := range cm.Data {
				ipv4Only[cm.Name] = ipv4Only[cm.Name] || strings.Contains(v, "0.0.0.0:")
			}
		}
	}
	found := 0
	for _, o := range objs {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		binds := false
		for _, c := range spec.Containers {
			for _, a := range append(slices.Clone(c.Command), c.Args...) {
				binds = binds || strings.Contains(a, "0.0.0.0:")
			}
			for _, e := range c.Env {
				binds = binds || strings.Contains(e.Value, "0.0.0.0:")
			}
		}
		for _, v := range spec.Volumes {
			binds = binds || v.ConfigMap != nil && ipv4Only[v.ConfigMap.Name]
		}
		if !binds {
			continue
		}
		found++
		if !strings.Contains(notes, "`"+o.Name+"`") {
			t.Errorf("%s %s listens on 0.0.0.0, IPv4 only; README's IPv6 paragraph does not name `%s`", o.Kind, o.Name, o.Name)
		}
	}
	if found == 0 {
		t.Log("no workload of the kind build listens on 0.0.0.0")
	}
}
