package deploy

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
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

// trustedNetworks parses a trusted-proxies value (GATEWAY_TRUSTED_PROXIES, TRUSTED_PROXIES): CIDRs or bare
// addresses, comma-separated.
func trustedNetworks(t *testing.T, where, value string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range strings.Split(value, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				t.Errorf("%s: %q is neither a CIDR nor an address", where, s)
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out
}

// privateBlocks are the networks no Internet client can send from: a trusted proxy outside them lets whoever sends
// from there name any client address in X-Forwarded-For.
var privateBlocks = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("fc00::/7"), netip.MustParsePrefix("::1/128"),
}

func checkPrivate(t *testing.T, where string, nets []netip.Prefix) {
	t.Helper()
	for _, n := range nets {
		inside := false
		for _, b := range privateBlocks {
			inside = inside || (b.Contains(n.Addr()) && n.Bits() >= b.Bits())
		}
		if !inside {
			t.Errorf("%s trusts %s: addresses outside the private and loopback blocks may name any client in "+
				"X-Forwarded-For", where, n)
		}
	}
}

// trustVar says whether a variable names naming the proxies a binary believes X-Forwarded-For from.
func trustVar(name string) bool { return strings.HasSuffix(name, "TRUSTED_PROXIES") }

// TestNoServiceTrustsTheWholeInternet: every trusted-proxy network in compose and Kubernetes is private or loopback,
// and the user service, reached only through the gateway, believes the gateway alone: in compose the gateway's fixed
// address on the compose network, in kind the cluster's pod network (pods have no fixed address). Compose's user
// service trusted 0.0.0.0/0: any container on the network, or the Docker host, could name any address in
// X-Forwarded-For and pass its per-IP log-in guard.
func TestNoServiceTrustsTheWholeInternet(t *testing.T) {
	p := loadCompose(t, "load")
	checked := 0
	for name, s := range p.Services {
		for k, v := range s.Environment {
			if trustVar(k) {
				checked++
				checkPrivate(t, "compose "+name+" "+k, trustedNetworks(t, name, value(v)))
			}
		}
	}
	gw := ""
	for _, n := range p.Services["gateway"].Networks {
		if n != nil && n.Ipv4Address != "" {
			gw = n.Ipv4Address + "/32"
		}
	}
	if got := value(p.Services["user"].Environment["TRUSTED_PROXIES"]); gw == "" || got != gw {
		t.Errorf("compose user: TRUSTED_PROXIES=%q, want the gateway's fixed address alone (%q: give the gateway "+
			"an ipv4_address on the compose network)", got, gw)
	}
	pods := kindPodSubnet(t)
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			spec := podSpec(o)
			if spec == nil {
				continue
			}
			for _, c := range spec.Containers {
				for _, e := range c.Env {
					if !trustVar(e.Name) {
						continue
					}
					checked++
					where := dir + " " + o.Name + " " + e.Name
					nets := trustedNetworks(t, where, e.Value)
					checkPrivate(t, where, nets)
					if dir == "k8s/overlays/kind" && o.Name == "user" && (len(nets) != 1 || nets[0] != pods) {
						t.Errorf("%s=%q, want kind's pod network %s alone (kind-config.yaml's podSubnet), where the "+
							"gateway runs", where, e.Value, pods)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no trusted-proxy variable found: they moved, follow them here")
	}
}

// kindPodSubnet is kind-config.yaml's networking.podSubnet, which must be set (not left to kind's default) for the
// kind overlay to name it.
func kindPodSubnet(t *testing.T) netip.Prefix {
	t.Helper()
	b, err := os.ReadFile("k8s/kind-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Networking struct {
			PodSubnet string `json:"podSubnet"`
		} `json:"networking"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("kind-config.yaml: %v", err)
	}
	p, err := netip.ParsePrefix(cfg.Networking.PodSubnet)
	if err != nil {
		t.Errorf("kind-config.yaml: networking.podSubnet %q: set it, for the overlay's trusted networks to name it: %v",
			cfg.Networking.PodSubnet, err)
	}
	return p.Masked()
}
