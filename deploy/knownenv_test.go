package deploy

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// runtimeVars are read by the Go runtime, not by a config struct; OTEL_* are read by the OpenTelemetry SDK.
var runtimeVars = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true}

// unreadVars lists the variables a manifest gives binary b that nothing reads: a misspelt name is silently
// ignored by the binary, which then runs on the default the manifest meant to override. own are set for b alone
// and must be read by b; shared are set for every binary alike (compose's x-app environment, the platform-env
// ConfigMap) and must be read by at least one of them.
func unreadVars(t *testing.T, b Binary, own, shared []string) []string {
	t.Helper()
	mine, _ := configVars(t, b)
	anyone := map[string]bool{}
	for _, other := range Binaries {
		vars, _ := configVars(t, other)
		for v := range vars {
			anyone[v] = true
		}
	}
	var unread []string
	for _, v := range own {
		if _, ok := mine[v]; !ok && !runtimeVars[v] && !strings.HasPrefix(v, "OTEL_") {
			unread = append(unread, v)
		}
	}
	for _, v := range shared {
		if !anyone[v] && !runtimeVars[v] && !strings.HasPrefix(v, "OTEL_") {
			unread = append(unread, v)
		}
	}
	sort.Strings(unread)
	return unread
}

func TestComposeSetsOnlyVariablesTheBinariesRead(t *testing.T) {
	p := loadCompose(t)
	shared := map[string]bool{}
	if app, ok := p.Extensions["x-app"].(map[string]any); ok {
		if env, ok := app["environment"].(map[string]any); ok {
			for v := range env {
				shared[v] = true
			}
		}
	}
	if len(shared) == 0 {
		t.Fatal("compose file has no x-app environment: the shared variables moved, follow them here")
	}
	for _, b := range Binaries {
		s, ok := p.Services[b.Name]
		if !ok {
			continue // TestComposeRunsEveryBinaryWithItsConfiguration reports it
		}
		var own, common []string
		for v := range s.Environment {
			if shared[v] {
				common = append(common, v)
			} else {
				own = append(own, v)
			}
		}
		if unread := unreadVars(t, b, own, common); len(unread) > 0 {
			t.Errorf("%s: compose sets %v, which its configuration (%s) does not read", b.Name, unread, b.ConfigDir)
		}
	}
}

// dependentRef is a Kubernetes dependent variable reference, $(NAME).
var dependentRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

func TestKubernetesSetsOnlyVariablesTheBinariesRead(t *testing.T) {
	eachPlatformPod(t, func(t *testing.T, b Binary, w workload, cms map[string]map[string]string) {
		c := w.spec.Containers[0]
		// A variable only other values refer to, as $(POD_IP) in ADVERTISE_ADDR, is an input of the manifest, not
		// of the binary.
		referenced := map[string]bool{}
		for _, e := range c.Env {
			for _, m := range dependentRef.FindAllStringSubmatch(e.Value, -1) {
				referenced[m[1]] = true
			}
		}
		var own, shared []string
		for _, e := range c.Env {
			if !referenced[e.Name] {
				own = append(own, e.Name)
			}
		}
		for _, from := range c.EnvFrom {
			shared = append(shared, configMapKeys(t, cms, w.namespace, b.Name, from)...)
		}
		if unread := unreadVars(t, b, own, shared); len(unread) > 0 {
			t.Errorf("%s: Kubernetes sets %v, which its configuration (%s) does not read", b.Name, unread, b.ConfigDir)
		}
	})
}

// eachPlatformPod runs check on every platform binary's pod in every kustomize build, with the build's ConfigMaps.
// A binary missing from a build is TestComposeAndKubernetesDescribeTheSamePlatform's to report.
func eachPlatformPod(t *testing.T, check func(t *testing.T, b Binary, w workload, cms map[string]map[string]string)) {
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			pods, cms := k8sWorkloads(t, build(t, dir))
			for _, b := range Binaries {
				if w, ok := pods[b.Name]; ok {
					check(t, b, w, cms)
				}
			}
		})
	}
}

// configMapKeys are the variables an envFrom source gives a container.
func configMapKeys(t *testing.T, cms map[string]map[string]string, namespace, name string, from corev1.EnvFromSource) []string {
	t.Helper()
	if from.ConfigMapRef == nil {
		t.Errorf("%s: envFrom other than a ConfigMap: add it to this test", name)
		return nil
	}
	data, ok := cms[namespace+"/"+from.ConfigMapRef.Name]
	if !ok {
		t.Errorf("%s: envFrom names ConfigMap %s, which the build does not hold", name, from.ConfigMapRef.Name)
	}
	var keys []string
	for k := range data {
		keys = append(keys, from.Prefix+k)
	}
	return keys
}
