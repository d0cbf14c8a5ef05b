package deploy

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kindCluster is the cluster runKindUp names (SHANHAI_KIND_CLUSTER): not the default, so a test sees the script use it.
const kindCluster = "kindup-test"

// runKindUp runs scripts/kind-up.sh with testdata/kind-up/kubectl and docker, kind and curl that do nothing, keeping
// the fake's secrets in state; the fake's `apply -k` deploys what the kind overlay builds, which its `wait` and
// `rollout status` look for. failAt (namespace/name) makes the first write of that secret fail.
func runKindUp(t *testing.T, state, failAt string) ([]byte, error) {
	t.Helper()
	return runKindUpWith(t, state, failAt, nil)
}

// runKindUpWith is runKindUp with more commands on the script's PATH, ahead of the machine's: name to shell script.
func runKindUpWith(t *testing.T, state, failAt string, commands map[string]string) ([]byte, error) {
	t.Helper()
	bin := t.TempDir()
	kubectl, err := filepath.Abs("testdata/kind-up/kubectl")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(kubectl, filepath.Join(bin, "kubectl")); err != nil {
		t.Fatal(err)
	}
	// What the kind overlay deploys, for the fake's `wait` and `rollout status` to find once `apply -k` has run.
	var objects strings.Builder
	for _, o := range build(t, "k8s/overlays/kind") {
		fmt.Fprintf(&objects, "%s %s %s\n", o.Namespace, o.Kind, o.Name)
	}
	objectsFile := filepath.Join(bin, "objects")
	if err := os.WriteFile(objectsFile, []byte(objects.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"docker", "kind", "curl"} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, script := range commands {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("bash", kindUpScript)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"FAKE_KUBECTL_STATE="+state, "FAKE_KUBECTL_FAIL="+failAt, "FAKE_KUBECTL_OBJECTS="+objectsFile,
		"SHANHAI_KIND_CLUSTER="+kindCluster)
	return cmd.CombinedOutput()
}

// kindUpCalls runs kind-up.sh once, which must succeed, and returns the kubectl calls it made, one a line.
func kindUpCalls(t *testing.T) string {
	t.Helper()
	state := t.TempDir()
	out, err := runKindUp(t, state, "")
	if err != nil {
		t.Fatalf("kind-up.sh failed on the cluster it deployed: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(state, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// secrets reads the fake's secrets: "namespace/name/key" to value.
func secrets(t *testing.T, state string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(state, "*", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(state, f)
		out[filepath.ToSlash(rel)] = string(b)
	}
	return out
}

// TestKindUpRunsAgainAfterAPartialFailure: a kind-up.sh run cut short while writing the secrets can be run again,
// and then every secret a manifest reads exists; a further run keeps the values (the database was initialised with
// that password, tokens are signed with that key). The secrets were created with plain creates behind a check of
// one secret: a second run failed on the first that existed (AlreadyExists), or skipped those not yet created.
func TestKindUpRunsAgainAfterAPartialFailure(t *testing.T) {
	// namespace/name/key of every secretKeyRef in the kind build to whether it is optional: an optional one need not
	// be created (TestAnOptionalSecretKeyRefNeedNotBeCreated), but one that is must hold a value.
	want := map[string]bool{}
	for _, o := range build(t, "k8s/overlays/kind") {
		spec := podSpec(o)
		if spec == nil {
			continue
		}
		for _, c := range append(spec.InitContainers, spec.Containers...) {
			for _, e := range c.Env {
				if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
					want[o.Namespace+"/"+ref.SecretKeyRef.Name+"/"+ref.SecretKeyRef.Key] = secretRefOptional(ref.SecretKeyRef)
				}
			}
		}
	}
	if len(want) == 0 {
		t.Fatal("the kind build reads no secret")
	}
	for _, failAt := range []string{"shanhai/shanhai-auth", "shanhai/shanhai-db", "shanhai-infra/shanhai-db", "shanhai-infra/shanhai-grafana"} {
		t.Run(failAt, func(t *testing.T) {
			state := t.TempDir()
			calls := func() string { b, _ := os.ReadFile(filepath.Join(state, "calls")); return string(b) }
			if out, err := runKindUp(t, state, failAt); err == nil {
				t.Fatalf("the run with %s failing did not fail:\n%s", failAt, out)
			}
			if out, err := runKindUp(t, state, ""); err != nil {
				t.Fatalf("run again after the failure: %v\n%s\nkubectl calls:\n%s", err, out, calls())
			}
			got := secrets(t, state)
			for key, optional := range want {
				if v, ok := got[key]; v == "" && (ok || !optional) {
					t.Errorf("after the second run secret key %s is missing or empty (a manifest reads it)", key)
				}
			}
			for _, svc := range []string{"user", "order", "payment"} {
				pw := got["shanhai-infra/shanhai-db/"+svc+"-password"]
				if u := got["shanhai/shanhai-db/"+svc]; !strings.Contains(u, "://shanhai_"+svc+":"+pw+"@") {
					t.Errorf("shanhai-db %s URL %q does not hold the password %q PostgreSQL gives its role", svc, u, pw)
				}
			}
			if out, err := runKindUp(t, state, ""); err != nil {
				t.Fatalf("third run: %v\n%s", err, out)
			}
			if again := secrets(t, state); !maps.Equal(got, again) {
				t.Errorf("a further run changed the secrets:\nbefore %v\nafter  %v", got, again)
			}
		})
	}
}

// TestKindUpTargetsItsClusterAndKeepsSecretsOffArgv: every kubectl call kind-up.sh makes names the cluster's context,
// on the run that creates the secrets and on one that reads them back, and no secret value is ever a kubectl
// argument; the files that carry them instead were readable by this user only (the fake checks) and are gone after
// the run. The script used the current context, which only `kind create cluster` switches, so a run against an
// existing cluster read and wrote the secrets of whatever cluster was current; and it passed the signing key and the
// passwords with --from-literal, which every user of the machine can read in ps.
func TestKindUpTargetsItsClusterAndKeepsSecretsOffArgv(t *testing.T) {
	state := t.TempDir()
	for run := range 2 {
		if out, err := runKindUp(t, state, ""); err != nil {
			t.Fatalf("run %d: %v\n%s", run+1, err, out)
		}
	}
	b, err := os.ReadFile(filepath.Join(state, "calls"))
	if err != nil {
		t.Fatal(err)
	}
	calls := strings.Split(strings.TrimSpace(string(b)), "\n")
	values := secrets(t, state)
	if len(values) == 0 {
		t.Fatal("the runs wrote no secret")
	}
	for _, call := range calls {
		if !strings.HasPrefix(call, "--context kind-"+kindCluster+" ") {
			t.Errorf("kubectl %s: does not name the context kind-%s", call, kindCluster)
		}
		for key, v := range values {
			if strings.Contains(call, v) {
				t.Errorf("kubectl %s: holds the value of %s", call, key)
			}
		}
	}
	files, err := os.ReadFile(filepath.Join(state, "files"))
	if err != nil {
		t.Fatal(err)
	}
	for f := range strings.FieldsSeq(string(files)) {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("secret file %s is still there after the run (stat: %v)", f, err)
		}
	}
}

// TestKindUpReadsTheVariablesItsFilesName: a SHANHAI_* variable that the kind files or the script's own comments
// name is one kind-up.sh reads. kind-config.yaml promised Calico under SHANHAI_KIND_CNI=calico, which nothing read:
// the NetworkPolicies were never enforced on kind.
func TestKindUpReadsTheVariablesItsFilesName(t *testing.T) {
	script, err := os.ReadFile(kindUpScript)
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`SHANHAI_[A-Z0-9_]+`)
	for _, f := range []string{kindUpScript, "k8s/kind-config.yaml", "k8s/overlays/kind/kustomization.yaml", "README.md"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range named.FindAllString(string(b), -1) {
			if !strings.Contains(string(script), "${"+v) {
				t.Errorf("%s names %s, which %s does not read", f, v, kindUpScript)
			}
		}
	}
}

// TestKindUpWaitsForWhatEachNamespaceRuns: after applying the overlay kind-up.sh waits for every Deployment and
// DaemonSet it holds, and asks kubectl to wait only for what a namespace has. It waited for `deployment --all` in
// shanhai-system too, which holds the eBPF agent's DaemonSet alone: kubectl wait fails there with "no matching
// resources found", so every run stopped with an error after a good deploy, before the agent's rollout was watched
// and the smoke test ran.
func TestKindUpWaitsForWhatEachNamespaceRuns(t *testing.T) {
	calls := kindUpCalls(t)
	waited := func(ns, what string) bool {
		return regexp.MustCompile(`(?m)-n ` + regexp.QuoteMeta(ns) + ` (wait \S+|rollout status) ` + what + `( |$)`).MatchString(calls)
	}
	for _, o := range build(t, "k8s/overlays/kind") {
		switch o.Kind {
		case "Deployment":
			if !waited(o.Namespace, `(deployment|deployment/`+regexp.QuoteMeta(o.Name)+`)`) {
				t.Errorf("kind-up.sh does not wait for Deployment %s/%s", o.Namespace, o.Name)
			}
		case "DaemonSet":
			if !waited(o.Namespace, `daemonset/`+regexp.QuoteMeta(o.Name)) {
				t.Errorf("kind-up.sh does not wait for DaemonSet %s/%s", o.Namespace, o.Name)
			}
		}
	}
}

// macOSBase64 is base64 as macOS has it: BSD's options (-d, -D or --decode to decode; -b, -i, -o, which the script
// has no use for, are left out), its output on one line; GNU's -w is refused with BSD's usage, exit 64.
const macOSBase64 = `#!/bin/sh
decode=false
for a in "$@"; do
  case $a in
    -d|-D|--decode) decode=true ;;
    *) echo "base64: invalid option -- ${a#-}" >&2
       echo "Usage:	base64 [-Ddh] [-b num] [-i in_file] [-o out_file]" >&2
       exit 64 ;;
  esac
done
if $decode; then exec openssl base64 -d -A; fi
exec openssl base64 -A
`

// libreSSLOpenssl is macOS's /usr/bin/openssl (LibreSSL 3.3.6, still in 2026's macOS) as far as kind-up.sh is
// concerned: genpkey knows no Ed25519; everything else goes to the real openssl, whose path fills in the %s.
const libreSSLOpenssl = `#!/bin/sh
if [ "$1" = genpkey ]; then
  case "$*" in *[Ee][Dd]25519*) echo "Algorithm Ed25519 not found" >&2; exit 1 ;; esac
fi
exec %s "$@"
`

// TestKindUpRunsWithMacOSTools: kind-up.sh generates and reads back its secrets with macOS's base64 and openssl,
// as on the Macs many workshop users bring. It encoded the signing key with GNU's `base64 -w0`, which macOS refuses,
// and made it with `openssl genpkey -algorithm ed25519`, which macOS's LibreSSL does not know, so the first run
// there stopped before any secret was written.
func TestKindUpRunsWithMacOSTools(t *testing.T) {
	realOpenssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal(err)
	}
	macOS := map[string]string{"base64": macOSBase64, "openssl": fmt.Sprintf(libreSSLOpenssl, realOpenssl)}
	state := t.TempDir()
	for run := range 2 { // the second run reads back what the first wrote
		if out, err := runKindUpWith(t, state, "", macOS); err != nil {
			t.Fatalf("run %d with macOS's base64 and openssl: %v\n%s", run+1, err, out)
		}
	}
	key := secrets(t, state)["shanhai/shanhai-auth/signing-key"]
	der, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		t.Fatalf("signing key %q is not one line of standard base64: %v", key, err)
	}
	priv, err := x509.ParsePKCS8PrivateKey(der)
	if _, ok := priv.(ed25519.PrivateKey); err != nil || !ok {
		t.Errorf("signing key is not a PKCS #8 Ed25519 key: %T, %v", priv, err)
	}
}
