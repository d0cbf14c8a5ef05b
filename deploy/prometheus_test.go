package deploy

import (
	"fmt"
	"os"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// scrapeConfig is the part of a prometheus.yml these tests read.
type scrapeConfig struct {
	Global struct {
		ScrapeInterval     string `json:"scrape_interval"`
		EvaluationInterval string `json:"evaluation_interval"`
	} `json:"global"`
	ScrapeConfigs []struct {
		StaticConfigs []struct {
			Targets []string `json:"targets"`
		} `json:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `json:"names"`
			Port  int      `json:"port"`
		} `json:"dns_sd_configs"`
	} `json:"scrape_configs"`
}

// readPrometheusConfig reads the part of a prometheus.yml these tests look at.
func readPrometheusConfig(t *testing.T, file string) scrapeConfig {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var c scrapeConfig
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return c
}

// scrapeTargets reads a prometheus.yml into how often each target (host:port) is scraped.
func scrapeTargets(t *testing.T, file string) map[string]int {
	t.Helper()
	c := readPrometheusConfig(t, file)
	targets := map[string]int{}
	for _, sc := range c.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg]++
			}
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets[n+":"+strconv.Itoa(d.Port)]++
			}
		}
	}
	return targets
}

// otlpMetrics says why env (a binary's effective environment) would push its metrics over OTLP, or "" when it
// does not: pkg/telemetry adds an OTLP metric reader beside /metrics whenever an OTLP endpoint is set, unless
// OTEL_METRICS_EXPORTER=none.
func otlpMetrics(env map[string]string) string {
	if env["OTEL_METRICS_EXPORTER"] == "none" {
		return ""
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if env[v] != "" {
			return fmt.Sprintf("%s=%s without OTEL_METRICS_EXPORTER=none", v, env[v])
		}
	}
	return ""
}

// TestMetricsReachPrometheusOnce: Prometheus scrapes every platform binary's /metrics at its HTTP port (the
// gateway's at its admin listener: Binary.MetricsPort), once, and
// the binaries do not also push those metrics over OTLP. They did: the collector remote-wrote them to the same
// Prometheus as series of their own (job and instance from the resource), so every panel summing an OTel metric
// across series (bridge messages/s, consumer lag, in flight, saga outcomes, limiter decisions, outbox...) showed
// twice the real value.
func TestMetricsReachPrometheusOnce(t *testing.T) {
	p := loadCompose(t)
	scraped := scrapeTargets(t, "compose/prometheus/prometheus.yml")
	for _, b := range Binaries {
		target := b.Name + ":" + strconv.Itoa(b.ScrapePort())
		if scraped[target] != 1 {
			t.Errorf("compose: Prometheus scrapes %s %d times, want once", target, scraped[target])
		}
		s, ok := p.Services[b.Name]
		if !ok {
			continue
		}
		env := map[string]string{}
		for k, v := range s.Environment {
			env[k] = value(v)
		}
		if why := otlpMetrics(env); why != "" {
			t.Errorf("compose %s: pushes its metrics over OTLP too (%s)", b.Name, why)
		}
	}

	objs := build(t, "k8s/overlays/kind")
	scraped = scrapeTargets(t, "k8s/components/infra/resources/prometheus.yml")
	pods, cms := k8sWorkloads(t, objs)
	for _, b := range Binaries {
		w, ok := pods[b.Name]
		if !ok {
			continue
		}
		if why := otlpMetrics(containerEnv(t, b.Name, w, cms)); why != "" {
			t.Errorf("Kubernetes %s: pushes its metrics over OTLP too (%s)", b.Name, why)
		}
		// Each pod is scraped through a headless Service of its namespace that selects it and names its port.
		n, podLabels := 0, labels.Set(podTemplateLabels(t, objs, b.Name))
		for _, o := range objs {
			svc, ok := o.Value.(*corev1.Service)
			if !ok || o.Namespace != w.namespace || svc.Spec.ClusterIP != corev1.ClusterIPNone {
				continue
			}
			if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
				continue
			}
			target := fmt.Sprintf("%s.%s.svc.cluster.local:%d", o.Name, o.Namespace, b.ScrapePort())
			for _, port := range svc.Spec.Ports {
				if port.Port == int32(b.ScrapePort()) {
					n += scraped[target]
				}
			}
		}
		if n != 1 {
			t.Errorf("Kubernetes: Prometheus scrapes %s's pods at port %d through %d headless Services, want one", b.Name, b.ScrapePort(), n)
		}
	}
}

// podTemplateLabels are the pod labels of the Deployment or DaemonSet called name.
func podTemplateLabels(t *testing.T, objs []object, name string) map[string]string {
	t.Helper()
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *appsv1.Deployment:
			if o.Name == name {
				return v.Spec.Template.Labels
			}
		case *appsv1.DaemonSet:
			if o.Name == name {
				return v.Spec.Template.Labels
			}
		}
	}
	t.Fatalf("no workload %s", name)
	return nil
}

// TestPrometheusScrapesPodsThatAreNotReady: every Service the kind cluster's Prometheus finds its targets through
// (dns_sd_configs) is headless and publishes its pods' addresses whether they are ready or not. A headless Service
// names ready pods alone by default, so a pod failing its readiness probe left Prometheus's targets: exactly the
// pods in trouble, whose series the alerts read. The bridge's /readyz fails "pulsar-admin" while partitions wait
// for a Pulsar size policy, so BridgeArchiveWaitingForPulsarPolicy (bridge_pulsar_policy_waiting for 10 minutes)
// could never fire in Kubernetes; payment's fails "database" while its database is down, which is when
// PaymentDeadLetterUnrecorded and PaymentSettleRoundFailing count. Compose's static targets were always scraped.
func TestPrometheusScrapesPodsThatAreNotReady(t *testing.T) {
	const file = "k8s/components/infra/resources/prometheus.yml"
	services := map[string]*corev1.Service{}
	for _, o := range build(t, "k8s/overlays/kind") {
		if s, ok := o.Value.(*corev1.Service); ok {
			services[o.Name+"."+o.Namespace+".svc.cluster.local"] = s
		}
	}
	c := readPrometheusConfig(t, file)
	n := 0
	for _, sc := range c.ScrapeConfigs {
		for _, d := range sc.DNSSDConfigs {
			for _, name := range d.Names {
				n++
				s, ok := services[name]
				switch {
				case !ok:
					t.Errorf("%s: Prometheus resolves %s, which is no Service of the kind build", file, name)
				case s.Spec.ClusterIP != corev1.ClusterIPNone:
					t.Errorf("Service %s is not headless: its name resolves to one address, not to each pod", name)
				case !s.Spec.PublishNotReadyAddresses:
					t.Errorf("Service %s names ready pods only: a pod failing readiness is no longer scraped, and its alerts go blind (want publishNotReadyAddresses: true)", name)
				}
			}
		}
	}
	if n == 0 {
		t.Fatalf("%s: no dns_sd_configs: this test follows how Prometheus finds the pods; update it", file)
	}
}

// TestPrometheusEvaluatesTheRulesAlike: compose's and the kind cluster's Prometheus load the same alert rules, and
// evaluate them at the same interval. The kind config set none, so its rules ran at Prometheus's default of once a
// minute against compose's 5 s: the same alert fired up to a minute later there, and a condition whose `for:` it
// outlasted by less than a minute (BridgePartitionHeldByDLQ held for 5 m 30 s against its 5 m) could clear between
// two evaluations without firing, where compose's caught it.
func TestPrometheusEvaluatesTheRulesAlike(t *testing.T) {
	read := func(file string) scrapeConfig {
		t.Helper()
		c := readPrometheusConfig(t, file)
		// Prometheus's defaults for what the global section leaves out.
		if c.Global.ScrapeInterval == "" {
			c.Global.ScrapeInterval = "1m"
		}
		if c.Global.EvaluationInterval == "" {
			c.Global.EvaluationInterval = "1m"
		}
		return c
	}
	const composeFile, kindFile = "compose/prometheus/prometheus.yml", "k8s/components/infra/resources/prometheus.yml"
	compose, kind := read(composeFile).Global, read(kindFile).Global
	if compose.EvaluationInterval != kind.EvaluationInterval {
		t.Errorf("rules are evaluated every %s in compose (%s) but every %s in Kubernetes (%s): the same alert fires at different times",
			compose.EvaluationInterval, composeFile, kind.EvaluationInterval, kindFile)
	}
	if compose.ScrapeInterval != kind.ScrapeInterval {
		t.Errorf("targets are scraped every %s in compose (%s) but every %s in Kubernetes (%s)",
			compose.ScrapeInterval, composeFile, kind.ScrapeInterval, kindFile)
	}
}
