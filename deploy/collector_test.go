package deploy

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// collectorConfig is the Collector pipeline compose and Kubernetes both run (observability/kustomization.yaml).
const collectorConfig = "observability/otel/collector.yaml"

// checkCollector says what is wrong with the OpenTelemetry Collector's memory under a container limit of limit bytes,
// given its environment and its configuration (YAML). The Collector is a Go program: with no GOMEMLIMIT the runtime
// does not see the container's limit and lets the heap grow to twice what is live before a GC, so a burst of spans,
// or Jaeger slow to take them while the batches queue, had it killed at the limit (checkGOMEMLIMIT says where to set
// it). Its memory_limiter must come first in every pipeline, so data is refused before it is held (the processor's
// own advice), and its hard limit (limit_mib) must not pass GOMEMLIMIT: there the runtime already collects without
// pause, and the limiter would refuse nothing until the CPU was spent on GC.
func checkCollector(env map[string]string, limit int64, config []byte) []string {
	var errs []string
	soft := env["GOMEMLIMIT"]
	if err := checkGOMEMLIMIT(soft, 0, limit); err != nil {
		errs = append(errs, err.Error())
	}
	var cfg struct {
		Processors map[string]struct {
			LimitMiB      int64 `json:"limit_mib"`
			SpikeLimitMiB int64 `json:"spike_limit_mib"`
		} `json:"processors"`
		Service struct {
			Pipelines map[string]struct {
				Processors []string `json:"processors"`
			} `json:"pipelines"`
		} `json:"service"`
	}
	if err := yaml.Unmarshal(config, &cfg); err != nil {
		return append(errs, fmt.Sprintf("%s: %v", collectorConfig, err))
	}
	if len(cfg.Service.Pipelines) == 0 {
		errs = append(errs, collectorConfig+": no pipelines: follow them here")
	}
	for name, p := range cfg.Service.Pipelines {
		if len(p.Processors) == 0 || strings.Split(p.Processors[0], "/")[0] != "memory_limiter" {
			errs = append(errs, fmt.Sprintf("pipeline %s: processors %v, want memory_limiter first", name, p.Processors))
			continue
		}
		ml := cfg.Processors[p.Processors[0]]
		gomem, err := strconv.ParseInt(strings.TrimSuffix(soft, "MiB"), 10, 64)
		switch {
		case ml.LimitMiB <= 0 || ml.SpikeLimitMiB <= 0 || ml.SpikeLimitMiB >= ml.LimitMiB:
			errs = append(errs, fmt.Sprintf("pipeline %s: %s limit_mib %d, spike_limit_mib %d: want both, the spike below the limit",
				name, p.Processors[0], ml.LimitMiB, ml.SpikeLimitMiB))
		case err == nil && ml.LimitMiB > gomem:
			errs = append(errs, fmt.Sprintf("pipeline %s: %s limit_mib %d is over GOMEMLIMIT %s",
				name, p.Processors[0], ml.LimitMiB, soft))
		}
	}
	return errs
}

// TestCollectorHoldsItsMemory: the Collector keeps under its memory limit, in compose and in the in-cluster
// observability (checkCollector says how).
func TestCollectorHoldsItsMemory(t *testing.T) {
	config, err := os.ReadFile(collectorConfig)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := loadCompose(t).Services["otel-collector"]
	if !ok || s.Deploy == nil || s.Deploy.Resources.Limits == nil {
		t.Fatal("compose: no otel-collector service with a memory limit: follow it here")
	}
	env := map[string]string{}
	for k, v := range s.Environment {
		env[k] = value(v)
	}
	for _, e := range checkCollector(env, int64(s.Deploy.Resources.Limits.MemoryBytes), config) {
		t.Errorf("compose otel-collector: %s", e)
	}
	where, c := kindContainer(t, "otel-collector")
	env = map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, e := range checkCollector(env, c.Resources.Limits.Memory().Value(), config) {
		t.Errorf("%s: %s", where, e)
	}
}

// TestCollectorProbesAskTheRunningCollector: the kubelet's probes of the in-cluster Collector ask the Collector
// itself whether its pipelines run, through its health_check extension, which collector.yaml enables on every
// interface (its default since 0.104 is localhost, which the kubelet, dialling the pod's IP, cannot reach). The
// probes opened a TCP connection to the OTLP port, which the receiver holds from the start whether or not the
// pipeline behind it runs, and the pod declared (and its Service published) a health port, 13133, on which nothing
// listened: the extension was not enabled.
func TestCollectorProbesAskTheRunningCollector(t *testing.T) {
	raw, err := os.ReadFile(collectorConfig)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Extensions map[string]struct {
			Endpoint string `json:"endpoint"`
		} `json:"extensions"`
		Service struct {
			Extensions []string `json:"extensions"`
		} `json:"service"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatalf("%s: %v", collectorConfig, err)
	}
	hc, defined := cfg.Extensions["health_check"]
	host, port, err := net.SplitHostPort(hc.Endpoint)
	switch {
	case !defined || !slices.Contains(cfg.Service.Extensions, "health_check"):
		t.Fatalf("%s does not run the health_check extension (extensions: %v)", collectorConfig, cfg.Service.Extensions)
	case err != nil:
		t.Fatalf("%s: health_check endpoint %q: %v", collectorConfig, hc.Endpoint, err)
	case host != "" && host != "0.0.0.0" && host != "::":
		t.Errorf("%s: health_check listens on %s only: the kubelet dials the pod's IP", collectorConfig, hc.Endpoint)
	}

	where, c := kindContainer(t, "otel-collector")
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: %s probe is not an HTTP GET of the health_check extension", where, name)
			continue
		}
		got := p.HTTPGet.Port.String()
		for _, cp := range c.Ports {
			if cp.Name == got {
				got = strconv.Itoa(int(cp.ContainerPort))
			}
		}
		if got != port {
			t.Errorf("%s: %s probe asks port %s; the health_check extension listens on %s", where, name, p.HTTPGet.Port.String(), port)
		}
	}
}

// TestCollectorServiceLeavesHealthToTheKubelet: the otel-collector Service publishes the OTLP ports alone. The
// health_check extension's port is the kubelet's, which probes the pod's IP and needs no Service; published, it
// handed the Collector's state and uptime to any client of the namespace where no NetworkPolicy is enforced, a port
// 03643e4 brought to life (before it nothing listened there) without anyone having a use for it.
func TestCollectorServiceLeavesHealthToTheKubelet(t *testing.T) {
	where, c := kindContainer(t, "otel-collector")
	health := map[string]bool{}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			continue // TestCollectorProbesAskTheRunningCollector's to report
		}
		health[p.HTTPGet.Port.String()] = true
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.String() || strconv.Itoa(int(cp.ContainerPort)) == p.HTTPGet.Port.String() {
				health[cp.Name], health[strconv.Itoa(int(cp.ContainerPort))] = true, true
			}
		}
	}
	if len(health) == 0 {
		t.Fatalf("%s: no HTTP probe names the health port", where)
	}
	found := false
	for _, o := range build(t, "k8s/overlays/kind") {
		svc, ok := o.Value.(*corev1.Service)
		if !ok || o.Name != "otel-collector" {
			continue
		}
		found = true
		for _, sp := range svc.Spec.Ports {
			target := sp.TargetPort.String()
			if target == "0" { // unset: the Service's own port
				target = strconv.Itoa(int(sp.Port))
			}
			if health[target] {
				t.Errorf("Service otel-collector publishes the health_check port (%s → %s): only the kubelet asks it, at the pod",
					sp.Name, target)
			}
		}
	}
	if !found {
		t.Fatal("no otel-collector Service in the kind build: follow it here")
	}
}
