package deploy

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const kindDownScript = "../scripts/kind-down.sh"

// runKindDown runs scripts/kind-down.sh with only bin on its PATH.
func runKindDown(t *testing.T, bin string) (string, error) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bash, kindDownScript)
	cmd.Env = append(os.Environ(), "PATH="+bin, "SHANHAI_KIND_CLUSTER="+kindCluster)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Without kind, kind-down.sh said only bash's "kind: command not found" and exited 127; it names kind, says there is
// no cluster of its to delete and how to install it, and exits 1, as kind-up.sh does for a missing tool.
func TestKindDownWithoutKind(t *testing.T) {
	out, err := runKindDown(t, t.TempDir())
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("kind-down.sh without kind: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(out, "kind-down: kind is not installed") || !strings.Contains(out, "go install sigs.k8s.io/kind@") {
		t.Fatalf("kind-down.sh without kind said:\n%s", out)
	}
}

// With kind, it deletes the cluster kind-up.sh made: the one SHANHAI_KIND_CLUSTER names.
func TestKindDownDeletesTheCluster(t *testing.T) {
	bin := t.TempDir()
	calls := filepath.Join(bin, "calls")
	fake := "#!/bin/sh\necho \"$@\" >> " + calls + "\n"
	if err := os.WriteFile(filepath.Join(bin, "kind"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := runKindDown(t, bin); err != nil {
		t.Fatalf("kind-down.sh: %v\n%s", err, out)
	}
	got, err := os.ReadFile(calls)
	if err != nil {
		t.Fatal(err)
	}
	if want := "delete cluster --name " + kindCluster + "\n"; string(got) != want {
		t.Fatalf("kind calls %q, want %q", got, want)
	}
}
