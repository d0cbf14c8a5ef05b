package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestManifestsGiveValuesTheBinariesAccept: each binary's own configuration loader (its config struct through
// pkg/config, Validate included), compiled from its source, accepts the exact environment each manifest gives it:
// compose's, compose's with the client limits lifted as deploy/README.md shows, and each kustomize build's as the
// kubelet assembles it (the Secrets kind-up.sh generates, the pod's IP, $(VAR) references, and the service links
// of the namespace's Services, which every pod gets unless enableServiceLinks is false). The other tests check
// names: that each variable is read and each required one set. A value the binary refuses (a malformed duration
// or rate, a CIDR, a LOG_LEVEL it does not know, a URL its Validate turns down) passed them all and stopped the
// container at start with exit 2.
func TestManifestsGiveValuesTheBinariesAccept(t *testing.T) {
	checkers := configCheckers(t)
	check := func(t *testing.T, b Binary, env map[string]string) {
		t.Helper()
		cmd := exec.Command(checkers[b.Name])
		cmd.Env = []string{configCheckTrigger + "=1"}
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			t.Errorf("%s refuses the configuration it is given (exit %d):\n%s", b.Name, exit.ExitCode(), out)
		case err != nil:
			t.Fatalf("%s: %v", b.Name, err)
		}
	}

	composeEnvs := map[string][]string{"compose": nil, "compose with the limits lifted (README)": readmeLift(t)}
	for label, lift := range composeEnvs {
		t.Run(label, func(t *testing.T) {
			p := loadComposeWithEnv(t, lift)
			for _, b := range Binaries {
				s, ok := p.Services[b.Name]
				if !ok {
					continue // TestComposeAndKubernetesDescribeTheSamePlatform reports it
				}
				env := map[string]string{}
				for k, v := range s.Environment {
					if v != nil { // a bare name passes the caller's variable through: unset here
						env[k] = *v
					}
				}
				check(t, b, env)
			}
		})
	}

	secretValues := kindUpSecrets(t)
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			objs := build(t, dir)
			pods, cms := k8sWorkloads(t, objs)
			for _, b := range Binaries {
				w, ok := pods[b.Name]
				if !ok {
					continue
				}
				check(t, b, kubeletEnv(t, objs, cms, secretValues, w))
			}
		})
	}
}

// configCheckTrigger makes the check of a binary whose config struct is in its main package load it and exit before
// main runs.
const configCheckTrigger = "SHANHAI_DEPLOY_CONFIG_CHECK"

// checkProgram loads the Config of the package it imports from the process environment, as the binary does at
// start, and exits 2 with pkg/config's message when that refuses it.
const checkProgram = `package main

import (
	"fmt"
	"os"

	pkgconfig "github.com/shanhai-dev/shanhai/pkg/config"
	config %q
)

func main() {
	var c config.Config
	if err := pkgconfig.Load(&c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
`

// checkHook is added beside a main package's own files: it loads that package's Config in an init, which runs
// before main, so the binary's work never starts.
const checkHook = `package main

import (
	"fmt"
	"os"

	configcheck "github.com/shanhai-dev/shanhai/pkg/config"
)

func init() {
	if os.Getenv(%q) == "" {
		return
	}
	var c Config
	if err := configcheck.Load(&c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(0)
}
`

// configCheckers builds, for each binary, a program that loads its configuration and nothing else, from the
// source as it is: one go build with an overlay (go help build, -overlay), so nothing is written into the other
// modules. A config package is imported by a small main in a directory the overlay adds beside it; a config
// struct in a main package (the eBPF agent's) gets the package's own files, in an added directory too, plus an
// init that loads it and exits.
func configCheckers(t *testing.T) map[string]string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	src, out := t.TempDir(), t.TempDir()
	replace := map[string]string{}
	add := func(virtual, text string) {
		real := filepath.Join(src, fmt.Sprintf("%d.go", len(replace)))
		if err := os.WriteFile(real, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		replace[virtual] = real
	}
	bins := map[string]string{}
	var pkgs []string
	for _, b := range Binaries {
		dir := filepath.Join(root, b.ConfigDir)
		check := filepath.Join(dir, "zzconfigcheck"+strings.ReplaceAll(b.Name, "-", ""))
		files, name := packageFiles(t, dir)
		if name == "main" {
			for _, f := range files {
				replace[filepath.Join(check, filepath.Base(f))] = f
			}
			add(filepath.Join(check, "zz_configcheck.go"), fmt.Sprintf(checkHook, configCheckTrigger))
		} else {
			add(filepath.Join(check, "main.go"), fmt.Sprintf(checkProgram, modulePrefix+filepath.ToSlash(b.ConfigDir)))
		}
		rel, _ := filepath.Rel(root, check)
		pkgs = append(pkgs, "./"+filepath.ToSlash(rel))
		bins[b.Name] = filepath.Join(out, filepath.Base(check))
	}
	overlay, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	overlayFile := filepath.Join(src, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		t.Fatal(err)
	}
	// The Dockerfile's flags but the link's: the packages compile as TestBinariesBuildStaticAsInTheImage compiles
	// them, so the build cache serves one build to the other.
	args := append([]string{"build", "-overlay", overlayFile}, buildLikeDockerfile[1:len(buildLikeDockerfile)-1]...)
	args = append(append(args, "-o", out+string(filepath.Separator)), pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, msg)
	}
	return bins
}

// packageFiles lists the non-test Go files of dir and their package's name.
func packageFiles(t *testing.T, dir string) ([]string, string) {
	t.Helper()
	all, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	var files []string
	name := ""
	for _, f := range all {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly)
		if err != nil {
			t.Fatal(err)
		}
		files, name = append(files, f), file.Name.Name
	}
	if len(files) == 0 {
		t.Fatalf("%s holds no Go source", dir)
	}
	return files, name
}

// readmeLift is the NAME=value list deploy/README.md's "Load" section puts before docker compose to lift the limits.
func readmeLift(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("README.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	assignment := regexp.MustCompile(`^[A-Z][A-Z0-9_]*=\S*$`)
	var lift []string
	sc := bufio.NewScanner(f)
	for in := false; sc.Scan(); {
		line := sc.Text()
		if !in && !strings.HasPrefix(line, "GATEWAY_IP_LIMIT=") {
			continue
		}
		in = true
		for _, w := range strings.Fields(line) {
			if assignment.MatchString(w) {
				lift = append(lift, w)
			}
		}
		if !strings.HasSuffix(line, `\`) {
			break
		}
	}
	if len(lift) == 0 {
		t.Fatal(`README.md shows no "GATEWAY_IP_LIMIT=... docker compose" command to lift the limits: follow it here`)
	}
	return lift
}

// kindUpSecrets are the Secrets scripts/kind-up.sh generates ("namespace/name/key" to value), from a run with the
// test kubectl.
func kindUpSecrets(t *testing.T) map[string]string {
	t.Helper()
	state := t.TempDir()
	if out, err := runKindUp(t, state, ""); err != nil {
		t.Fatalf("kind-up.sh: %v\n%s", err, out)
	}
	return secrets(t, state)
}

// kubeletEnv is the environment the kubelet gives w's first container: the service links of its namespace's
// Services with a cluster IP, then its envFrom ConfigMaps, then its env, each $(NAME) in a value replaced by what
// came before, a Secret's key by the value kind-up.sh generates (an optional key it does not generate leaves the
// variable unset, as the kubelet does), the pod's IP by one of kind's and a resource field
// (the gateway's CPU limit) as the kubelet rounds it.
func kubeletEnv(t *testing.T, objs []object, cms map[string]map[string]string, secretValues map[string]string, w workload) map[string]string {
	t.Helper()
	env := serviceLinks(objs, w.namespace)
	c := w.spec.Containers[0]
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("%s: envFrom other than a ConfigMap: add it here", c.Name)
		}
		for k, v := range cms[w.namespace+"/"+from.ConfigMapRef.Name] {
			env[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch src := e.ValueFrom; {
		case src == nil:
			env[e.Name] = dependentRef.ReplaceAllStringFunc(e.Value, func(ref string) string {
				if v, ok := env[ref[2:len(ref)-1]]; ok {
					return v
				}
				return ref // the kubelet leaves an unknown reference as written
			})
		case src.SecretKeyRef != nil:
			key := w.namespace + "/" + src.SecretKeyRef.Name + "/" + src.SecretKeyRef.Key
			v, ok := secretValues[key]
			if !ok && secretRefOptional(src.SecretKeyRef) {
				continue // the kubelet skips it (an envFrom value of that name stays); a created one is checked
			}
			if !ok {
				t.Fatalf("%s: %s reads secret key %s, which kind-up.sh does not generate", c.Name, e.Name, key)
			}
			env[e.Name] = v
		case src.FieldRef != nil && src.FieldRef.FieldPath == "status.podIP":
			env[e.Name] = "10.244.0.17"
		case src.ResourceFieldRef != nil:
			env[e.Name] = resourceFieldValue(t, w.spec, c, e.Name, src.ResourceFieldRef)
		default:
			t.Fatalf("%s: %s comes from a source this test does not know: add it here", c.Name, e.Name)
		}
	}
	return env
}

// resourceFieldValue is what the kubelet puts in variable name for ref, a container's CPU or memory request or
// limit: the quantity divided by ref's divisor (default 1) and rounded up, so a CPU limit of 500m is "1" CPU (or
// "500" with a divisor of 1m). An unset limit is the node's allocatable capacity, which no build holds: refused.
func resourceFieldValue(t *testing.T, spec *corev1.PodSpec, self corev1.Container, name string, ref *corev1.ResourceFieldSelector) string {
	t.Helper()
	c, found := self, ref.ContainerName == "" || ref.ContainerName == self.Name
	for _, other := range spec.Containers {
		if !found && other.Name == ref.ContainerName {
			c, found = other, true
		}
	}
	if !found {
		t.Fatalf("%s: %s reads the resources of container %q, which the pod does not have", self.Name, name, ref.ContainerName)
	}
	kind, res, _ := strings.Cut(ref.Resource, ".")
	list := map[string]corev1.ResourceList{"limits": c.Resources.Limits, "requests": c.Resources.Requests}[kind]
	q, ok := list[corev1.ResourceName(res)]
	if !ok || (res != "cpu" && res != "memory") {
		t.Fatalf("%s: %s reads %s, which container %s does not set (the kubelet would give the node's capacity) or this test does not know", self.Name, name, ref.Resource, c.Name)
	}
	divisor := resource.MustParse("1")
	if !ref.Divisor.IsZero() {
		divisor = ref.Divisor
	}
	if res == "cpu" {
		return strconv.FormatInt(int64(math.Ceil(float64(q.MilliValue())/float64(divisor.MilliValue()))), 10)
	}
	return strconv.FormatInt(int64(math.Ceil(float64(q.Value())/float64(divisor.Value()))), 10)
}

// serviceLinks are the variables the kubelet adds for each Service with a cluster IP in namespace (Docker links'
// form: USER_SERVICE_HOST, USER_PORT=tcp://..., USER_PORT_8081_TCP_ADDR...), and the API server's own.
func serviceLinks(objs []object, namespace string) map[string]string {
	env := map[string]string{
		"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
		"KUBERNETES_PORT": "tcp://10.96.0.1:443",
	}
	var services []*corev1.Service
	for _, o := range objs {
		if s, ok := o.Value.(*corev1.Service); ok && o.Namespace == namespace && s.Spec.ClusterIP != corev1.ClusterIPNone {
			services = append(services, s)
		}
	}
	sort.Slice(services, func(i, j int) bool { return services[i].Name < services[j].Name })
	for i, s := range services {
		if len(s.Spec.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		ip := fmt.Sprintf("10.96.1.%d", i+1)
		env[name+"_SERVICE_HOST"] = ip
		env[name+"_SERVICE_PORT"] = fmt.Sprint(s.Spec.Ports[0].Port)
		env[name+"_PORT"] = fmt.Sprintf("tcp://%s:%d", ip, s.Spec.Ports[0].Port)
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				env[name+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = fmt.Sprint(p.Port)
			}
			prefix := fmt.Sprintf("%s_PORT_%d_TCP", name, p.Port)
			env[prefix] = fmt.Sprintf("tcp://%s:%d", ip, p.Port)
			env[prefix+"_PROTO"] = "tcp"
			env[prefix+"_PORT"] = fmt.Sprint(p.Port)
			env[prefix+"_ADDR"] = ip
		}
	}
	return env
}
