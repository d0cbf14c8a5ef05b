package deploy

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const composeFile = "compose/compose.yaml"

// memoryBudget is what the default stack may ask for in all: the OpenTelemetry demo needs 6 GB; Shanhai aims at 4.
// 4 GiB and 96 MiB since the bridge's limit went from 128 to 224 MiB on a measured peak of 188 MiB
// (bridge/README.md, "Memory"): the stack was at 4,096 MiB and no other part has a measured 96 MiB to spare.
// 4 GiB and 192 MiB since the eBPF agent's limit went from 192 to 288 MiB to hold the BPF maps of the 10 executables
// BPF_MAX_EXECUTABLES lets it probe (each target's old and new build through a redeploy), not only the 5 targets'.
// 4 GiB and 224 MiB since the user service's went from 64 to 96 MiB to hold the peak a burst of log ins measured
// (94.6 MiB of RSS; deploy/README.md "Memory requests"): nothing else has a measured 32 MiB to spare.
const memoryBudget = 4<<30 + 224<<20

func loadCompose(t *testing.T, profiles ...string) *types.Project {
	t.Helper()
	return loadComposeWithEnv(t, nil, profiles...)
}

// loadComposeWithEnv loads the compose file as `docker compose` does with env (NAME=value) set in its environment.
func loadComposeWithEnv(t *testing.T, env []string, profiles ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{composeFile},
		cli.WithName("shanhai"), cli.WithProfiles(profiles), cli.WithEnv(append([]string{}, env...)))
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose file does not load with compose-go: %v", err)
	}
	return p
}

// oneShot says whether a service runs to completion: something waits for it with service_completed_successfully.
func oneShot(p *types.Project, name string) bool {
	for _, s := range p.Services {
		if d, ok := s.DependsOn[name]; ok && d.Condition == types.ServiceConditionCompletedSuccessfully {
			return true
		}
	}
	return false
}

func TestComposeServicesAreComplete(t *testing.T) {
	p := loadCompose(t, "load")
	var total int64
	for name, s := range p.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", name)
		}
		if s.Image != "" {
			if err := pinned(s.Image); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
		optIn := len(s.Profiles) > 0
		if !oneShot(p, name) && !optIn && (s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Test[0] == "NONE") {
			t.Errorf("%s: no healthcheck", name)
		}
		if s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes == 0 {
			t.Errorf("%s: no memory limit", name)
			continue
		}
		if !optIn {
			total += int64(s.Deploy.Resources.Limits.MemoryBytes)
		}
	}
	t.Logf("default stack memory limits: %d MiB of %d MiB", total>>20, memoryBudget>>20)
	if total > memoryBudget {
		t.Errorf("default stack limits sum to %d MiB, over the %d MiB budget", total>>20, memoryBudget>>20)
	}
}

// pinned rejects images without an explicit version (or with latest): a stack that changes under you is not a reference.
func pinned(image string) error {
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	_, tag, ok := strings.Cut(name, ":")
	if !ok || tag == "" || tag == "latest" {
		return fmt.Errorf("image %q is not pinned to a version", image)
	}
	return nil
}

func TestComposeDependenciesAreHealthGatedAndAcyclic(t *testing.T) {
	p := loadCompose(t, "load")
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			if _, ok := p.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
				continue
			}
			if d.Condition != types.ServiceConditionHealthy && d.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("%s → %s: condition %q; want service_healthy (or completed, for one-shots)", name, dep, d.Condition)
			}
		}
	}
	// Depth-first search for a cycle.
	state := map[string]int{} // 0 new, 1 on stack, 2 done
	var visit func(string, []string)
	visit = func(n string, path []string) {
		switch state[n] {
		case 1:
			t.Errorf("dependency cycle: %s → %s", strings.Join(path, " → "), n)
			return
		case 2:
			return
		}
		state[n] = 1
		for dep := range p.Services[n].DependsOn {
			visit(dep, append(path, n))
		}
		state[n] = 2
	}
	for name := range p.Services {
		visit(name, nil)
	}
}

func TestComposeRunsEveryBinaryWithItsConfiguration(t *testing.T) {
	p := loadCompose(t)
	for _, b := range Binaries {
		s, ok := p.Services[b.Name]
		if !ok {
			t.Errorf("%s: not in the compose file", b.Name)
			continue
		}
		if s.Build == nil || s.Build.Args["BINARY"] == nil || *s.Build.Args["BINARY"] != b.Package {
			t.Errorf("%s: build arg BINARY should be %s", b.Name, b.Package)
		}
		has := func(v string) bool { val, ok := s.Environment[v]; return ok && val != nil && *val != "" }
		if missing := missingRequired(t, b, has); len(missing) > 0 {
			t.Errorf("%s: required configuration not set: %v", b.Name, missing)
		}
		port := strconv.Itoa(b.Port)
		if addr := s.Environment["HTTP_ADDR"]; addr == nil || !strings.HasSuffix(*addr, ":"+port) {
			t.Errorf("%s: HTTP_ADDR should listen on %s", b.Name, port)
		}
		live := strconv.Itoa(b.LivePort()) // the gateway's admin listener: see TestComposeHardening
		if hc := s.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "127.0.0.1:"+live+"/") {
			t.Errorf("%s: healthcheck does not probe port %s", b.Name, live)
		}
	}
}

// TestComposeKeepsObservabilityOnLoopback: Grafana (with its local-dev admin password), Prometheus, Jaeger and the
// collector's OTLP receivers are for the developer at this machine; published on every interface they were open to
// the whole network. Only the gateway, the platform's door, is published beyond loopback.
func TestComposeKeepsObservabilityOnLoopback(t *testing.T) {
	p := loadCompose(t, "load")
	published := 0
	for name, s := range p.Services {
		for _, port := range s.Ports {
			if port.Published == "" || name == "gateway" {
				continue
			}
			published++
			if port.HostIP != "127.0.0.1" {
				t.Errorf("%s publishes port %s on %q, want 127.0.0.1", name, port.Published, port.HostIP)
			}
		}
	}
	if published == 0 {
		t.Error("no service but the gateway publishes a port: the test checks nothing")
	}
}

// TestComposeGoMemoryLimitsSetGOMEMLIMIT: every platform binary sets GOMEMLIMIT under its compose memory limit, as in
// Kubernetes (checkGOMEMLIMIT says why); none did.
func TestComposeGoMemoryLimitsSetGOMEMLIMIT(t *testing.T) {
	p := loadCompose(t)
	for _, b := range Binaries {
		s, ok := p.Services[b.Name]
		if !ok || s.Deploy == nil || s.Deploy.Resources.Limits == nil || s.Deploy.Resources.Limits.MemoryBytes == 0 {
			t.Errorf("%s: no compose service with a memory limit", b.Name)
			continue
		}
		env := map[string]string{}
		for _, k := range []string{"GOMEMLIMIT", "BPF_TARGETS", "BPF_MAX_EXECUTABLES"} {
			if v := s.Environment[k]; v != nil {
				env[k] = *v
			}
		}
		maps, err := agentMapBytes(b.Name, env["BPF_TARGETS"], env["BPF_MAX_EXECUTABLES"], composeAgentCPUs)
		if err == nil {
			err = checkGOMEMLIMIT(env["GOMEMLIMIT"], maps, int64(s.Deploy.Resources.Limits.MemoryBytes))
		}
		if err != nil {
			t.Errorf("compose %s: %v", b.Name, err)
		}
	}
}

// TestComposeKafkaKeepsItsLogOnItsVolume: Kafka's log directories (KAFKA_LOG_DIRS) are on the volume mounted for them.
// Compose mounted kafkadata at /var/lib/kafka/data but left KAFKA_LOG_DIRS unset, and the apache/kafka image, configured
// from KAFKA_* variables, writes no log.dirs: the broker kept its topics and committed offsets in its default
// /tmp/kafka-logs, in the container. A recreated container (docker compose down and up, a changed variable) came back
// empty beside the databases, JetStream and Pulsar on their volumes, and the bridge's Pulsar producers, whose
// sequence ids are Kafka offsets, then had the new records dropped as replays until the offsets passed the old ones.
func TestComposeKafkaKeepsItsLogOnItsVolume(t *testing.T) {
	onVolume := func(dirs string, mounts []string) []string {
		var off []string
		for _, d := range strings.Split(dirs, ",") {
			on := false
			for _, m := range mounts {
				on = on || d == m || strings.HasPrefix(d, strings.TrimSuffix(m, "/")+"/")
			}
			if !on {
				off = append(off, d)
			}
		}
		return off
	}
	s := loadCompose(t).Services["kafka"]
	var mounts []string
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume {
			mounts = append(mounts, v.Target)
		}
	}
	if dirs := value(s.Environment["KAFKA_LOG_DIRS"]); dirs == "" {
		t.Errorf("compose kafka: KAFKA_LOG_DIRS unset, so the broker logs to /tmp/kafka-logs, off its volumes %v", mounts)
	} else if off := onVolume(dirs, mounts); len(off) > 0 {
		t.Errorf("compose kafka: log directories %v are on none of its volumes %v", off, mounts)
	}
}

// TestComposeLongRunningServicesRestart: every service of the default stack but the one-shots comes back by itself
// after it exits or the Docker daemon restarts (a reboot), as a pod would in Kubernetes. Only the platform binaries
// and the agent had a restart policy: after a reboot they came back without PostgreSQL, Redis, etcd, Kafka, NATS and
// Pulsar and failed until someone ran docker compose up again, and an infrastructure container killed at its memory
// limit (an OOM kill is an exit) stayed down.
func TestComposeLongRunningServicesRestart(t *testing.T) {
	p := loadCompose(t)
	for name, s := range p.Services {
		if oneShot(p, name) {
			continue
		}
		switch s.Restart {
		case types.RestartPolicyUnlessStopped, types.RestartPolicyAlways:
		default:
			t.Errorf("%s: restart %q, want unless-stopped: it stays down after it exits or Docker restarts", name, s.Restart)
		}
	}
}

// TestComposeFixedAddressesAreOutsideTheDynamicRange: a container's fixed address (ipv4_address) lies in its
// network's subnet but outside the range Docker hands out to the others (ip_range). Docker gives a container without
// one the lowest free address of the subnet when it starts and reserves nothing for a container that has not
// started: the gateway, whose user service trusts its X-Forwarded-For by its fixed 172.31.240.10, starts after some
// fifteen others, the ninth of which had already been given .10, and failed with "Address already in use".
func TestComposeFixedAddressesAreOutsideTheDynamicRange(t *testing.T) {
	p := loadCompose(t, "load")
	fixed := 0
	for name, s := range p.Services {
		for netName, n := range s.Networks {
			if n == nil || n.Ipv4Address == "" {
				continue
			}
			fixed++
			addr, err := netip.ParseAddr(n.Ipv4Address)
			if err != nil {
				t.Errorf("%s: ipv4_address %q: %v", name, n.Ipv4Address, err)
				continue
			}
			inSubnet, outsideRange := false, false
			for _, pool := range p.Networks[netName].Ipam.Config {
				subnet, err := netip.ParsePrefix(pool.Subnet)
				if err != nil || !subnet.Contains(addr) {
					continue
				}
				inSubnet = true
				if r, err := netip.ParsePrefix(pool.IPRange); err == nil && subnet.Contains(r.Addr()) && !r.Contains(addr) {
					outsideRange = true
				}
			}
			switch {
			case !inSubnet:
				t.Errorf("%s: ipv4_address %s is in no subnet of network %s", name, addr, netName)
			case !outsideRange:
				t.Errorf("%s: ipv4_address %s may be handed to another container of network %s first: give the network an "+
					"ip_range within its subnet that leaves it out", name, addr, netName)
			}
		}
	}
	if fixed == 0 {
		t.Fatal("no service has a fixed address: the user service's TRUSTED_PROXIES moved, follow it here")
	}
}
