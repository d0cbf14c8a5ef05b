package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// imageExecutable is the base name of the executable an image built with --build-arg BINARY=pkg runs, as the kernel
// reports it in /proc/<pid>/exe, which is what the eBPF agent matches BPF_TARGETS against (with comm, the base name
// of the path exec'd): the ENTRYPOINT, or the file the build stage links it to (ln -s; COPY keeps a symbolic link
// inside a directory it copies), ${BINARY##*/} there standing for the package's last element.
func imageExecutable(t *testing.T, dockerfile, pkg string) string {
	t.Helper()
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT\s+\["([^"]+)"`).FindStringSubmatch(dockerfile)
	if entry == nil {
		t.Fatal("Dockerfile has no exec-form ENTRYPOINT")
	}
	exe := entry[1]
	for _, m := range regexp.MustCompile(`ln -s "?([^"\s]+)"? (\S+)`).FindAllStringSubmatch(dockerfile, -1) {
		if strings.HasSuffix(m[2], exe) {
			exe = strings.ReplaceAll(m[1], "${BINARY##*/}", path.Base(pkg))
		}
	}
	return path.Base(exe)
}

// agentTargets checks a BPF_TARGETS value (set is false when the manifest leaves the agent's default) against the
// images: every platform binary but the agent must be matched, by the base name of the executable its image runs.
// Every image ran /app, so the names matched no process and the agent observed nothing in compose or Kubernetes.
func agentTargets(t *testing.T, where, value string, set bool) {
	t.Helper()
	if !set {
		agentVars, _ := configVars(t, binary(t, privileged))
		value = agentVars["BPF_TARGETS"]
	}
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	targets := strings.Split(value, ",")
	for _, b := range Binaries {
		if b.Name == privileged {
			continue
		}
		if exe := imageExecutable(t, string(df), b.Package); !slices.Contains(targets, exe) {
			t.Errorf("%s: BPF_TARGETS=%s does not match %s, whose image runs an executable named %s", where, value, b.Name, exe)
		}
	}
}

func TestAgentTargetsTheExecutablesTheImagesRun(t *testing.T) {
	p := loadCompose(t)
	v, ok := p.Services[privileged].Environment["BPF_TARGETS"]
	agentTargets(t, "compose", value(v), ok && v != nil)
	eachPlatformPod(t, func(t *testing.T, b Binary, w workload, _ map[string]map[string]string) {
		if b.Name != privileged {
			return
		}
		for _, e := range w.spec.Containers[0].Env {
			if e.Name == "BPF_TARGETS" {
				agentTargets(t, "Kubernetes", e.Value, true)
				return
			}
		}
		agentTargets(t, "Kubernetes", "", false)
	})
}

// preflightCapabilities are the capabilities the agent's preflight (bpf/internal/agent/preflight.go) asks for: the
// capability bits it tests (constants capXxx), and CAP_SYS_RESOURCE when it raises RLIMIT_MEMLOCK.
func preflightCapabilities(t *testing.T) []string {
	t.Helper()
	file := filepath.Join(repoRoot, "bpf", "internal", "agent", "preflight.go")
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), file, src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var caps []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for _, id := range spec.Names {
			if rest, ok := strings.CutPrefix(id.Name, "cap"); ok && rest != "" && unicode.IsUpper(rune(rest[0])) {
				caps = append(caps, capabilityName(rest))
			}
		}
		return true
	})
	if strings.Contains(string(src), "rlimit.RemoveMemlock") {
		caps = append(caps, "SYS_RESOURCE")
	}
	if len(caps) == 0 {
		t.Fatalf("%s names no capability: the preflight changed, follow it here", file)
	}
	slices.Sort(caps)
	return caps
}

// capabilityName turns a constant's CamelCase (DacReadSearch, BPF) into the capability's name (DAC_READ_SEARCH, BPF).
func capabilityName(camel string) string {
	var b strings.Builder
	for i, r := range camel {
		if i > 0 && unicode.IsUpper(r) && unicode.IsLower(rune(camel[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// TestAgentGetsThePreflightsCapabilitiesAndNoMore: the eBPF agent runs with every capability dropped and exactly the
// ones its preflight asks for added, in compose as in Kubernetes. Compose ran it privileged: every capability, every
// host device, a writable /sys and no seccomp or AppArmor profile, none of which it uses.
func TestAgentGetsThePreflightsCapabilitiesAndNoMore(t *testing.T) {
	want := preflightCapabilities(t)
	check := func(t *testing.T, where string, privileged bool, drop, add []string) {
		t.Helper()
		add = slices.Sorted(slices.Values(add))
		if privileged || !slices.Contains(drop, "ALL") || !slices.Equal(add, want) {
			t.Errorf("%s: privileged %v, drops %v, adds %v; want not privileged, ALL dropped, %v added", where, privileged, drop, add, want)
		}
	}
	s := loadCompose(t).Services[privileged]
	check(t, "compose", s.Privileged, s.CapDrop, s.CapAdd)
	eachPlatformPod(t, func(t *testing.T, b Binary, w workload, _ map[string]map[string]string) {
		if b.Name != privileged {
			return
		}
		sc := w.spec.Containers[0].SecurityContext
		if sc == nil || sc.Capabilities == nil {
			t.Errorf("Kubernetes %s: no capabilities set", b.Name)
			return
		}
		var drop, add []string
		for _, c := range sc.Capabilities.Drop {
			drop = append(drop, string(c))
		}
		for _, c := range sc.Capabilities.Add {
			add = append(add, string(c))
		}
		check(t, "Kubernetes", sc.Privileged != nil && *sc.Privileged, drop, add)
	})
}

// agentSysPaths are the /sys paths the agent's code opens: the string literals under /sys/ in the non-test sources of
// its packages (bpf/cmd/agent and bpf/internal). A host mount no such path lies in gives the agent, root with
// CAP_SYS_ADMIN, a host file system it has no use for.
func agentSysPaths(t *testing.T) []string {
	t.Helper()
	var paths []string
	for _, dir := range []string{"bpf/cmd/agent", "bpf/internal"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && strings.HasPrefix(s, "/sys/") {
						paths = append(paths, path.Clean(s))
					}
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(paths) == 0 {
		t.Fatal("the agent's sources name no /sys path: the preflight moved, follow it here")
	}
	return paths
}

// agentMount is one host directory given to the agent's container.
type agentMount struct {
	host, target string
	readOnly     bool
}

// checkAgentMounts holds the agent's host mounts to what its code reads, read-only: kernel BTF and the tracepoint
// ids in tracefs. Nothing of the agent writes there: it pins no map or program (no bpffs), attaches uprobes through
// the uprobe PMU (perf_event_open, Linux 4.17; its probes need 5.8) rather than tracefs's uprobe_events, and reads
// tracepoint ids; the mount it may make itself is for a node without tracefs, not over one it was given. Compose
// gave it the host's bpffs, tracefs and debugfs read-write, and Kubernetes bpffs and tracefs: a root process with
// CAP_SYS_ADMIN could unpin another agent's or the CNI's BPF maps, or add kprobes and turn on tracing host-wide.
func checkAgentMounts(t *testing.T, where string, mounts []agentMount, used []string) {
	t.Helper()
	for _, m := range mounts {
		needed := false
		for _, p := range used {
			needed = needed || p == m.target || strings.HasPrefix(p, m.target+"/")
		}
		if !needed {
			t.Errorf("%s: the agent mounts the host's %s at %s, which its code never opens (it opens %v)", where, m.host, m.target, used)
			continue
		}
		if !m.readOnly {
			t.Errorf("%s: the agent mounts the host's %s at %s writable; it only reads there", where, m.host, m.target)
		}
	}
}

func TestAgentMountsOnlyWhatItReadsReadOnly(t *testing.T) {
	used := agentSysPaths(t)
	var mounts []agentMount
	for _, v := range loadCompose(t).Services[privileged].Volumes {
		if v.Type == "bind" {
			mounts = append(mounts, agentMount{host: v.Source, target: path.Clean(v.Target), readOnly: v.ReadOnly})
		}
	}
	checkAgentMounts(t, "compose", mounts, used)
	eachPlatformPod(t, func(t *testing.T, b Binary, w workload, _ map[string]map[string]string) {
		if b.Name != privileged {
			return
		}
		hostPaths := map[string]string{}
		for _, v := range w.spec.Volumes {
			if v.HostPath != nil {
				hostPaths[v.Name] = v.HostPath.Path
			}
		}
		var mounts []agentMount
		for _, c := range append(w.spec.InitContainers, w.spec.Containers...) {
			for _, vm := range c.VolumeMounts {
				if host, ok := hostPaths[vm.Name]; ok {
					mounts = append(mounts, agentMount{host: host, target: path.Clean(vm.MountPath), readOnly: vm.ReadOnly})
				}
			}
		}
		checkAgentMounts(t, "Kubernetes", mounts, used)
	})
}
