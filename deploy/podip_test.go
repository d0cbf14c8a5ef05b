package deploy

import (
	"os"
	"strings"
	"testing"

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
