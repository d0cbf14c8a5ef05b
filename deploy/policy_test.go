package deploy

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// TestKubernetesProbesAndHardening: each platform container's readiness probe asks /readyz on the binary's HTTP
// port and its liveness probe /healthz on its LivePort (the HTTP port, or the gateway's admin listener, which its
// client cap does not count: on :8080 a full gateway failed liveness and was restarted); a probe on another port or
// path fails every pod, or passes a broken one. Every container drops all capabilities (the eBPF agent adds back
// what it needs: checkContainer).
func TestKubernetesProbesAndHardening(t *testing.T) {
	eachPlatformPod(t, func(t *testing.T, b Binary, w workload, _ map[string]map[string]string) {
		c := w.spec.Containers[0]
		checkProbe(t, b, c, "readiness", c.ReadinessProbe, "/readyz", b.Port)
		checkProbe(t, b, c, "liveness", c.LivenessProbe, "/healthz", b.LivePort())
		if c.StartupProbe != nil {
			checkProbe(t, b, c, "startup", c.StartupProbe, "/healthz", b.LivePort())
		}
		if sc := c.SecurityContext; sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: container must drop ALL capabilities", b.Name)
		}
	})
}

func checkProbe(t *testing.T, b Binary, c corev1.Container, kind string, p *corev1.Probe, path string, want int) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: %s probe must be an HTTP GET of %s", b.Name, kind, path)
		return
	}
	if p.HTTPGet.Path != path {
		t.Errorf("%s: %s probe asks %s, want %s", b.Name, kind, p.HTTPGet.Path, path)
	}
	port := p.HTTPGet.Port
	if port.Type == intstr.String {
		port = intstr.FromInt32(0)
		for _, cp := range c.Ports {
			if cp.Name == p.HTTPGet.Port.StrVal {
				port = intstr.FromInt32(cp.ContainerPort)
			}
		}
	}
	if port.IntValue() != want {
		t.Errorf("%s: %s probe on port %s, want %d", b.Name, kind, p.HTTPGet.Port.String(), want)
	}
}

// TestComposeHardening: the platform binaries run as a non-root user on a read-only root filesystem with every
// capability dropped and no privilege escalation, and their healthcheck asks /readyz, or, for a binary with a
// LivenessPort (the gateway), /healthz there (compose has one check, and no Service a failing readiness would take a
// full gateway out of); only the eBPF agent may not.
func TestComposeHardening(t *testing.T) {
	p := loadCompose(t)
	for _, b := range Binaries {
		s, ok := p.Services[b.Name]
		if !ok || b.Name == privileged {
			continue
		}
		uid, _, _ := strings.Cut(s.User, ":")
		if uid == "" || uid == "0" || uid == "root" {
			t.Errorf("%s: runs as user %q, want a non-root uid", b.Name, s.User)
		}
		if !s.ReadOnly {
			t.Errorf("%s: root filesystem must be read-only", b.Name)
		}
		if !slices.Contains(s.CapDrop, "ALL") || len(s.CapAdd) > 0 || s.Privileged {
			t.Errorf("%s: must drop ALL capabilities and add none", b.Name)
		}
		if !slices.Contains(s.SecurityOpt, "no-new-privileges:true") {
			t.Errorf("%s: must set no-new-privileges", b.Name)
		}
		want := "127.0.0.1:" + strconv.Itoa(b.Port) + "/readyz"
		if b.LivenessPort != 0 {
			want = "127.0.0.1:" + strconv.Itoa(b.LivenessPort) + "/healthz"
		}
		if hc := s.HealthCheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), want) {
			t.Errorf("%s: healthcheck must ask %s", b.Name, want)
		}
	}
}

// secretName matches variables that hold credentials.
var secretName = regexp.MustCompile(`PASSWORD|SECRET|TOKEN|SIGNING_KEY|CREDENTIALS`)

// TestCommittedSecretsAreLocalDevOnly: a credential written in the compose file says it is for local development
// (compose is the laptop stack); in Kubernetes, credentials come only from Secrets, which deploy time creates.
func TestCommittedSecretsAreLocalDevOnly(t *testing.T) {
	p := loadCompose(t, "load")
	for name, s := range p.Services {
		for k, v := range s.Environment {
			if v == nil || *v == "" {
				continue
			}
			if secretName.MatchString(k) && !strings.Contains(*v, "local-dev") {
				t.Errorf("compose %s: %s is a committed credential not marked local-dev", name, k)
			}
			if u, err := url.Parse(*v); err == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && !strings.Contains(pw, "local-dev") {
					t.Errorf("compose %s: %s has a password not marked local-dev", name, k)
				}
			}
		}
	}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			for _, o := range build(t, dir) {
				if cm, ok := o.Value.(*corev1.ConfigMap); ok {
					for k, v := range cm.Data {
						if u, err := url.Parse(v); err == nil && u.User != nil {
							if _, ok := u.User.Password(); ok {
								t.Errorf("ConfigMap %s/%s: %s holds a password; use a Secret", o.Namespace, o.Name, k)
							}
						}
					}
				}
				spec := podSpec(o)
				if spec == nil {
					continue
				}
				for _, c := range append(spec.InitContainers, spec.Containers...) {
					for _, e := range c.Env {
						credential := secretName.MatchString(e.Name) || e.Name == "DATABASE_URL"
						if credential && (e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil) {
							t.Errorf("%s %s/%s container %s: %s must come from a Secret", o.Kind, o.Namespace, o.Name, c.Name, e.Name)
						}
					}
				}
			}
		})
	}
}

// kindUpScript creates the Secrets the manifests refer to; they are never committed.
const kindUpScript = "../scripts/kind-up.sh"

// TestEverySecretKeyRefIsCreatedAtDeploy: a secretKeyRef whose Secret or key scripts/kind-up.sh does not create
// leaves its pod in CreateContainerConfigError, which no build-time check would show. The script runs against the
// fake kubectl of kindup_test.go, which keeps what it would create.
func TestEverySecretKeyRefIsCreatedAtDeploy(t *testing.T) {
	state := t.TempDir()
	if out, err := runKindUp(t, state, ""); err != nil {
		t.Fatalf("%s: %v\n%s", kindUpScript, err, out)
	}
	created := map[string]map[string]bool{}
	for k := range secrets(t, state) { // namespace/name/key
		_, nameKey, _ := strings.Cut(k, "/")
		name, key, _ := strings.Cut(nameKey, "/")
		if created[name] == nil {
			created[name] = map[string]bool{}
		}
		created[name][key] = true
	}
	if len(created) == 0 {
		t.Fatalf("%s created no secret", kindUpScript)
	}
	for _, dir := range kustomizations {
		t.Run(dir, func(t *testing.T) {
			for _, missing := range uncreatedSecretRefs(build(t, dir), created) {
				t.Errorf("%s, which %s does not create", missing, kindUpScript)
			}
		})
	}
}

// uncreatedSecretRefs describes each secretKeyRef in objs whose key created (secret name to its keys) lacks and
// that would stop its container: the kubelet refuses to start one whose required Secret or key is missing, while
// it leaves an optional one's variable unset (secretRefOptional).
func uncreatedSecretRefs(objs []object, created map[string]map[string]bool) []string {
	var out []string
	for _, o := range objs {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				ref := e.ValueFrom.SecretKeyRef
				if !created[ref.Name][ref.Key] && !secretRefOptional(ref) {
					out = append(out, fmt.Sprintf("%s %s/%s container %s: %s reads secret %s key %s",
						o.Kind, o.Namespace, o.Name, c.Name, e.Name, ref.Name, ref.Key))
				}
			}
		}
	}
	return out
}

// secretRefOptional: ref is marked optional: true. Unset (or false) it is required.
func secretRefOptional(ref *corev1.SecretKeySelector) bool {
	return ref.Optional != nil && *ref.Optional
}

// TestAnOptionalSecretKeyRefNeedNotBeCreated: the rule above holds for required refs only. An optional one
// (the user service's next and previous signing keys, which an operator adds to rotate) the kubelet leaves unset
// when the key is missing, and the container starts.
func TestAnOptionalSecretKeyRefNeedNotBeCreated(t *testing.T) {
	deployment := func(optional *bool) []object {
		d := &appsv1.Deployment{}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "user", Env: []corev1.EnvVar{{
			Name: "AUTH_NEXT_KEY",
			ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: "shanhai-auth"}, Key: "next-key", Optional: optional,
			}},
		}}}}
		return []object{{Kind: "Deployment", Namespace: "shanhai", Name: "user", Value: d}}
	}
	yes, no := true, false
	none := map[string]map[string]bool{"shanhai-auth": {"signing-key": true}}
	made := map[string]map[string]bool{"shanhai-auth": {"signing-key": true, "next-key": true}}
	for _, tc := range []struct {
		name     string
		optional *bool
		created  map[string]map[string]bool
		missing  bool
	}{
		{"required, not created", nil, none, true},
		{"optional: false, not created", &no, none, true},
		{"optional, not created", &yes, none, false},
		{"required, created", nil, made, false},
		{"optional, created", &yes, made, false},
	} {
		got := uncreatedSecretRefs(deployment(tc.optional), tc.created)
		if (len(got) > 0) != tc.missing {
			t.Errorf("%s: reported %q, want a report: %v", tc.name, got, tc.missing)
		}
	}
}
