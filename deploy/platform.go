// Package deploy holds the docker compose and Kubernetes descriptions of the platform and the tests that keep them
// honest without a container engine: both are parsed with the libraries the real tools use, checked against
// policy, and compared with each other and with the binaries' own configuration code.
package deploy

// Binary is one of the platform's programs as the deployment manifests see it.
type Binary struct {
	Name      string // compose service, Kubernetes workload and image name (shanhai/<Name>)
	Package   string // Go package path from the repo root, the Dockerfile's BINARY argument
	ConfigDir string // where its env config struct lives; required variables are read from its tags
	Port      int    // HTTP_ADDR default port: health, readiness and (but for MetricsPort) metrics
	// MetricsPort, when not 0, is where Prometheus scrapes /metrics instead of Port: the admin listener
	// (ADMIN_ADDR) of the gateway, whose HTTP port is the public door and must not tell the world the platform's
	// routes, upstreams and error rates. It is never published or open to all.
	MetricsPort int
	// LivenessPort, when not 0, is where liveness (/healthz) is asked instead of Port: the gateway's admin
	// listener, which its client cap (GATEWAY_LOOP_MAX_CONNS) does not count. On Port a full gateway answers the
	// probe 503 gateway-busy, and was restarted for being full. Readiness stays on Port.
	LivenessPort int
	// AnyOf lists groups of variables of which at least one must be set, for requirements a struct tag cannot say
	// (the user service needs a signing key, or an explicit opt-in to throwaway development keys).
	AnyOf [][]string
}

// Binaries is the platform: every manifest must describe exactly these.
var Binaries = []Binary{
	{Name: "gateway", Package: "gateway/cmd/gateway", ConfigDir: "gateway/internal/config", Port: 8080, MetricsPort: 9080, LivenessPort: 9080},
	{Name: "user", Package: "services/user/cmd/user", ConfigDir: "services/user/internal/config", Port: 8081,
		AnyOf: [][]string{{"AUTH_SIGNING_KEY", "AUTH_SIGNING_KEY_FILE", "AUTH_DEV_KEYS"}}},
	{Name: "order", Package: "services/order/cmd/order", ConfigDir: "services/order/internal/config", Port: 8082},
	{Name: "payment", Package: "services/payment/cmd/payment", ConfigDir: "services/payment/internal/config", Port: 8083},
	{Name: "bridge", Package: "bridge/cmd/bridge", ConfigDir: "bridge/internal/config", Port: 8084},
	{Name: "bpf-agent", Package: "bpf/cmd/agent", ConfigDir: "bpf/cmd/agent", Port: 8085},
}

// LivePort is the port b's liveness is asked at.
func (b Binary) LivePort() int {
	if b.LivenessPort != 0 {
		return b.LivenessPort
	}
	return b.Port
}

// ScrapePort is the port Prometheus scrapes b's /metrics at.
func (b Binary) ScrapePort() int {
	if b.MetricsPort != 0 {
		return b.MetricsPort
	}
	return b.Port
}
