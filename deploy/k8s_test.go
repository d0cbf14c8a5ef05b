package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizations are every build people run: the base alone (production, managed infrastructure) and each overlay.
var kustomizations = []string{"k8s/base", "k8s/overlays/kind"}

// object is one built manifest, decoded into its typed Kubernetes struct.
type object struct {
	Kind, Namespace, Name string
	Value                 any
}

func newTyped(kind string) (any, error) {
	switch kind {
	case "Namespace":
		return &corev1.Namespace{}, nil
	case "ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "Service":
		return &corev1.Service{}, nil
	case "Deployment":
		return &appsv1.Deployment{}, nil
	case "DaemonSet":
		return &appsv1.DaemonSet{}, nil
	case "Job":
		return &batchv1.Job{}, nil
	case "HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, nil
	}
	return nil, fmt.Errorf("kind %s has no typed decoder here: add it to newTyped", kind)
}

// build runs kustomize exactly as `kubectl apply -k` would and decodes every object strictly: a misspelt field
// is an error here, as it would be on a strict API server, rather than silently dropped. Every call decodes afresh
// (callers may change what they get), but kustomize runs once per directory per test run: some forty tests build the
// same two directories, and kustomize under the race detector took seconds each time.
func build(t *testing.T, dir string) []object {
	t.Helper()
	k := kustomized(dir)
	if k.err != nil {
		t.Fatal(k.err)
	}
	var out []object
	for _, r := range k.resources {
		v, err := newTyped(r.kind)
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(r.json))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s: %s %s: %v", dir, r.kind, r.name, err)
			continue
		}
		out = append(out, object{Kind: r.kind, Namespace: r.namespace, Name: r.name, Value: v})
	}
	return out
}

// kustomization is one directory's kustomize output as JSON, or the error that stopped it.
type kustomization struct {
	resources []struct {
		kind, namespace, name string
		json                  []byte
	}
	err error
}

var (
	kustomizeMu   sync.Mutex // one kustomize run at a time: it keeps package-level state (its OpenAPI schema)
	kustomizeRuns = map[string]*kustomization{}
)

// kustomized runs kustomize on dir the first time it is asked for dir, and gives that run's output every time.
func kustomized(dir string) *kustomization {
	kustomizeMu.Lock()
	defer kustomizeMu.Unlock()
	if k, ok := kustomizeRuns[dir]; ok {
		return k
	}
	k := runKustomize(filesys.MakeFsOnDisk(), dir)
	kustomizeRuns[dir] = k
	return k
}

// runKustomize builds dir of fsys; the caller holds kustomizeMu.
func runKustomize(fsys filesys.FileSystem, dir string) *kustomization {
	k := &kustomization{}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fsys, dir)
	if err != nil {
		k.err = fmt.Errorf("kustomize build %s: %v", dir, err)
		return k
	}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			k.err = err
			return k
		}
		js, err := yaml.YAMLToJSON(y)
		if err != nil {
			k.err = err
			return k
		}
		k.resources = append(k.resources, struct {
			kind, namespace, name string
			json                  []byte
		}{r.GetKind(), r.GetNamespace(), r.GetName(), js})
	}
	return k
}

// podSpec returns the pod template of a workload, or nil for other kinds.
func podSpec(o object) *corev1.PodSpec {
	switch v := o.Value.(type) {
	case *appsv1.Deployment:
		return &v.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &v.Spec.Template.Spec
	case *batchv1.Job:
		return &v.Spec.Template.Spec
	}
	return nil
}

// eachContainer runs check on every container of every workload in every kustomize build.
func eachContainer(t *testing.T, check func(dir string, o object, c corev1.Container)) {
	t.Helper()
	for _, dir := range kustomizations {
		for _, o := range build(t, dir) {
			if spec := podSpec(o); spec != nil {
				for _, c := range spec.Containers {
					check(dir, o, c)
				}
			}
		}
	}
}

// privileged names the one workload allowed to run as root, in the host PID namespace, with capabilities added:
// the eBPF agent cannot load programs and attach uprobes otherwise. Not in privileged mode, which no container gets.
const privileged = "bpf-agent"

// agentCapabilities are all the agent may add, each for a reason daemonset.yaml gives (bpf/README.md measured them).
var agentCapabilities = []string{"BPF", "PERFMON", "SYS_ADMIN", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_RESOURCE"}

func TestKustomizeBuildsAndPassesPolicy(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			if len(objs) == 0 {
				t.Fatal("no objects built")
			}
			for _, o := range objs {
				spec := podSpec(o)
				if spec == nil {
					continue
				}
				// No workload calls the Kubernetes API (Prometheus finds its targets through DNS), so none gets a
				// token: one mounted is a credential for whoever breaks into the container, the eBPF agent's above all.
				if a := spec.AutomountServiceAccountToken; a == nil || *a {
					t.Errorf("%s %s/%s: automountServiceAccountToken must be false (it calls no Kubernetes API)", o.Kind, o.Namespace, o.Name)
				}
				for _, c := range spec.Containers {
					checkContainer(t, o, spec, c)
				}
			}
			checkNetworkPolicies(t, objs)
		})
	}
}

func checkContainer(t *testing.T, o object, spec *corev1.PodSpec, c corev1.Container) {
	t.Helper()
	where := fmt.Sprintf("%s %s/%s container %s", o.Kind, o.Namespace, o.Name, c.Name)
	if err := pinned(c.Image); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
		t.Errorf("%s: memory limit, memory request and cpu request must be set", where)
	}
	// The API server refuses a request above its limit when the manifest is applied, which no test here does.
	for name, req := range c.Resources.Requests {
		if lim, ok := c.Resources.Limits[name]; ok && req.Cmp(lim) > 0 {
			t.Errorf("%s: %s request %s is above its limit %s", where, name, req.String(), lim.String())
		}
	}
	if o.Kind != "Job" && (c.ReadinessProbe == nil || c.LivenessProbe == nil) {
		t.Errorf("%s: readiness and liveness probes must be set", where)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: root filesystem must be read-only", where)
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged; add the capabilities it needs instead", where)
	}
	if o.Name == privileged {
		if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: must drop ALL capabilities and add back only what it needs", where)
		} else {
			for _, c := range sc.Capabilities.Add {
				if !slices.Contains(agentCapabilities, string(c)) {
					t.Errorf("%s: adds capability %s, not one of %v", where, c, agentCapabilities)
				}
			}
		}
		return
	}
	nonRoot := func(s *bool) bool { return s != nil && *s }
	podNonRoot := spec.SecurityContext != nil && nonRoot(spec.SecurityContext.RunAsNonRoot)
	if sc == nil || !(nonRoot(sc.RunAsNonRoot) || podNonRoot) {
		t.Errorf("%s: must run as non-root", where)
	}
	if sc != nil && (sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation) {
		t.Errorf("%s: must not allow privilege escalation", where)
	}
	if sc != nil && sc.RunAsUser != nil && *sc.RunAsUser == 0 {
		t.Errorf("%s: runs as uid 0", where)
	}
	if spec.HostPID || spec.HostNetwork {
		t.Errorf("%s: host namespaces are only for %s", where, privileged)
	}
}

// checkNetworkPolicies requires a default-deny policy (all pods, both directions) in every namespace built.
func checkNetworkPolicies(t *testing.T, objs []object) {
	t.Helper()
	namespaces := map[string]bool{}
	denied := map[string]bool{}
	for _, o := range objs {
		if o.Kind == "Namespace" {
			namespaces[o.Name] = true
		} else if o.Namespace != "" {
			namespaces[o.Namespace] = true
		}
		np, ok := o.Value.(*networkingv1.NetworkPolicy)
		if !ok {
			continue
		}
		all := len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0
		types := fmt.Sprint(np.Spec.PolicyTypes)
		if all && len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0 && strings.Contains(types, "Ingress") && strings.Contains(types, "Egress") {
			denied[o.Namespace] = true
		}
	}
	for ns := range namespaces {
		if !denied[ns] {
			t.Errorf("namespace %s has no default-deny NetworkPolicy", ns)
		}
	}
}

// checkGOMEMLIMIT says what is wrong with a Go binary's GOMEMLIMIT (written in MiB) under a memory limit of limit
// bytes: the runtime does not see the container's limit, and with GOGC alone the heap may grow past it before the
// next GC and the container is OOM-killed. 70-90 % of the limit leaves room for what is not heap (stacks, the
// binary's mapped pages) without collecting all the time. maps is memory the container is charged for beside the Go
// heap that GOMEMLIMIT cannot see, the eBPF agent's BPF maps (agentMapBytes): the heap and the maps together must be
// 70-90 % of the limit, or the maps alone could take the limit before the heap reached GOMEMLIMIT.
func checkGOMEMLIMIT(soft string, maps, limit int64) error {
	mib, ok := strings.CutSuffix(soft, "MiB")
	n, err := strconv.ParseInt(mib, 10, 64)
	if !ok || err != nil || n <= 0 {
		return fmt.Errorf("memory limit %d MiB but GOMEMLIMIT %q, want a value in MiB", limit>>20, soft)
	}
	if used := n<<20 + maps; used > limit*9/10 || used < limit*7/10 {
		return fmt.Errorf("GOMEMLIMIT %s + %d MiB of BPF maps is not 70-90 %% of the %d MiB limit", soft, maps>>20, limit>>20)
	}
	return nil
}

// The possible CPUs the agent's memory limit is sized for: a Kubernetes node, and a development machine under compose,
// whose default stack must fit memoryBudget.
const (
	k8sAgentCPUs     = 16
	composeAgentCPUs = 8
)

// agentMapBytes is the most the kernel charges the eBPF agent's container for its BPF maps (a memory cgroup charge
// since Linux 5.11) given its BPF_TARGETS (targets, a comma-separated list) and BPF_MAX_EXECUTABLES (maxExecutables)
// on cpus possible CPUs, as bpf/README.md ("Map memory") measured with TestMapMemoryPerTarget: 5.8 MiB once, and per
// executable probed 4.7 MiB plus 1.77 MiB per possible CPU. The cap bounds them, not the number of targets: a target
// named by name matches every file of that name, and the agent tells executables apart by device and inode, which
// each container's overlay mount gives a device of its own, so every pod's copy of an image's binary is one more. The
// cap must hold each target twice, its old and new build through a rolling update (the old one stays probed for
// BPF_DETACH_GRACE after its last process exits), or the new build is left unprobed until the old one is detached.
// Other binaries have no maps.
func agentMapBytes(name, targets, maxExecutables string, cpus int) (int64, error) {
	if name != privileged {
		return 0, nil
	}
	n, err := strconv.Atoi(maxExecutables)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("BPF_MAX_EXECUTABLES %q, want a count sized to the memory limit (unset, the agent probes "+
			"up to 16 executables: %d MiB of maps on %d possible CPUs)", maxExecutables, agentMaps(16, cpus)>>20, cpus)
	}
	if want := 2 * len(strings.Split(targets, ",")); n < want {
		return 0, fmt.Errorf("BPF_MAX_EXECUTABLES %d leaves a new build unprobed in a rolling update: BPF_TARGETS=%s "+
			"needs %d, each target's old and new executable", n, targets, want)
	}
	return agentMaps(n, cpus), nil
}

// agentMaps is the BPF map memory of n executables probed on cpus possible CPUs (agentMapBytes).
func agentMaps(n, cpus int) int64 {
	return int64((5.8 + float64(n)*(4.7+1.77*float64(cpus))) * (1 << 20))
}

// TestGoMemoryLimitsSetGOMEMLIMIT: every platform binary with a memory limit sets GOMEMLIMIT under it. Only the
// 64Mi services did; the gateway, the bridge and the agent (128Mi) did not.
func TestGoMemoryLimitsSetGOMEMLIMIT(t *testing.T) {
	platform := map[string]bool{}
	for _, b := range Binaries {
		platform[b.Name] = true
	}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			limited := 0
			for _, o := range build(t, dir) {
				spec := podSpec(o)
				if spec == nil || !platform[o.Name] {
					continue
				}
				for _, c := range spec.Containers {
					limit := c.Resources.Limits.Memory().Value()
					if limit == 0 {
						continue
					}
					limited++
					soft, targets, maxExecutables := "", "", ""
					for _, e := range c.Env {
						switch e.Name {
						case "GOMEMLIMIT":
							soft = e.Value
						case "BPF_TARGETS":
							targets = e.Value
						case "BPF_MAX_EXECUTABLES":
							maxExecutables = e.Value
						}
					}
					maps, err := agentMapBytes(o.Name, targets, maxExecutables, k8sAgentCPUs)
					if err == nil {
						err = checkGOMEMLIMIT(soft, maps, limit)
					}
					if err != nil {
						t.Errorf("%s %s: %v", o.Kind, o.Name, err)
					}
				}
			}
			if limited != len(Binaries) {
				t.Errorf("%d platform containers with a memory limit, want all %d", limited, len(Binaries))
			}
		})
	}
}

// TestReplicaCountsMatchTheDeployments: a variable telling a binary how many replicas share its limits (REPLICAS,
// GATEWAY_REPLICAS) equals the most replicas of its Deployment that can run, its autoscaler's maxReplicas where one
// scales it: while Redis is down each replica enforces limit ÷ that number alone (pkg/limit), so the replicas
// together admit at most the limit, and less while fewer run. The kind overlay ran one replica of each but kept the
// base's 2, so there the limits fell to half whenever Redis was unreachable; the base said 2 while its autoscalers run
// 2 to 6 gateways and user services, so at 6 they admitted three times the per-IP and log-in limits.
func TestReplicaCountsMatchTheDeployments(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			checked := 0
			objs := build(t, dir)
			most := map[string]int32{} // Deployment name → its autoscaler's maxReplicas
			for _, o := range objs {
				if h, ok := o.Value.(*autoscalingv2.HorizontalPodAutoscaler); ok && h.Spec.ScaleTargetRef.Kind == "Deployment" {
					most[h.Spec.ScaleTargetRef.Name] = h.Spec.MaxReplicas
				}
			}
			for _, o := range objs {
				d, ok := o.Value.(*appsv1.Deployment)
				if !ok {
					continue
				}
				want := int32(1) // the API's default
				if d.Spec.Replicas != nil {
					want = *d.Spec.Replicas
				}
				if m, ok := most[o.Name]; ok {
					want = m
				}
				for _, c := range d.Spec.Template.Spec.Containers {
					for _, e := range c.Env {
						if !strings.HasSuffix(e.Name, "REPLICAS") {
							continue
						}
						checked++
						if n, err := strconv.Atoi(e.Value); err != nil || int32(n) != want {
							t.Errorf("Deployment %s: %s=%q, but up to %d replicas run", o.Name, e.Name, e.Value, want)
						}
					}
				}
			}
			if checked == 0 {
				t.Fatal("no replica count checked: the variables moved, follow them here")
			}
		})
	}
}

// agentHeap is the eBPF agent's Go heap probing its 5 targets, as measured (daemonset.yaml's GOMEMLIMIT comment).
const agentHeap = 20 << 20

// TestAgentMemoryRequestHoldsItsTargetsMaps: the agent's memory request covers what it uses in steady state, the BPF
// maps of one executable per target on k8sAgentCPUs possible CPUs and its heap. Its request stayed at 128Mi while
// those maps alone take 171 MiB, so the scheduler reserved less than the agent always uses and, under node memory
// pressure, the kubelet evicted it first (a pod above its request), taking every target's metrics away when they
// matter most. The limit above the request is left for the transient second executable of each target (the cap).
func TestAgentMemoryRequestHoldsItsTargetsMaps(t *testing.T) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			found := false
			for _, o := range build(t, dir) {
				spec := podSpec(o)
				if spec == nil || o.Name != privileged {
					continue
				}
				for _, c := range spec.Containers {
					targets := ""
					for _, e := range c.Env {
						if e.Name == "BPF_TARGETS" {
							targets = e.Value
						}
					}
					if targets == "" {
						continue
					}
					found = true
					n := len(strings.Split(targets, ","))
					want := agentMaps(n, k8sAgentCPUs) + agentHeap
					if got := c.Resources.Requests.Memory().Value(); got < want {
						t.Errorf("%s %s: memory request %d MiB, want at least %d MiB (%d targets' BPF maps on %d "+
							"possible CPUs and a %d MiB heap)", o.Kind, o.Name, got>>20, want>>20, n, k8sAgentCPUs, agentHeap>>20)
					}
				}
			}
			if !found {
				t.Errorf("no %s container with BPF_TARGETS", privileged)
			}
		})
	}
}
