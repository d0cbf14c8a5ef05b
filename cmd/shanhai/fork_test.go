package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFork runs scripts/fork.sh on a clone of this repository and checks that
// the copy names only the new module path and that every go.work module of
// it builds and vets (CHECK=1 makes the script run both).
func TestFork(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles every module of a copy")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "shop")
	const newPath = "example.org/acme/shop"
	cmd := exec.Command(filepath.Join(root, "scripts", "fork.sh"), newPath, dest, root)
	// -ldflags=-w: every main package of the copy is still compiled and
	// linked (go build -o /dev/null links a main package and discards it),
	// but without DWARF, which the check never reads and which is about half
	// the linker's time (cmd/shanhai: 8.4 s of CPU, 3.9 s with -w); linking is
	// what the build cache cannot save here.
	// The flag goes after the GOFLAGS in effect, which it must not replace.
	cmd.Env = append(os.Environ(), "CHECK=1", "GOWORK=", "GOFLAGS="+goflags(t)+" -ldflags=-w")
	// fork.sh is the package's longest step and only needs waiting for: it
	// starts before t.Parallel, which holds this test until the sequential
	// tests are done, so it runs while they do (most of their time is spent
	// waiting on a platform or a timeout), and while the other parallel tests
	// wait on their child programs afterwards.
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("fork.sh: %v", err)
	}
	t.Parallel()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("fork.sh: %v\n%s", err, out.Bytes())
	}
	t.Logf("%s", out.Bytes())

	grep := exec.Command("git", "grep", "-l", "github.com/shanhai-dev/shanhai")
	grep.Dir = dest
	if left, err := grep.Output(); err == nil || len(left) > 0 {
		t.Errorf("the copy still names the old module path in:\n%s", left)
	}
	mod, err := os.ReadFile(filepath.Join(dest, "services", "order", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module "+newPath+"/services/order\n") {
		t.Errorf("services/order/go.mod starts %q, want module %s/services/order", strings.SplitN(string(mod), "\n", 2)[0], newPath)
	}
	list := exec.Command("go", "list", "-m")
	list.Dir, list.Env = dest, append(os.Environ(), "GOWORK=")
	mods, err := list.Output()
	if err != nil {
		t.Fatalf("go list -m in the copy: %v", err)
	}
	for _, m := range strings.Fields(string(mods)) {
		if !strings.HasPrefix(m, newPath+"/") {
			t.Errorf("copy's workspace module %s is not under %s", m, newPath)
		}
	}

	// The copy is forked again with its own fork.sh, which clones committed
	// work only: the rewrite must have been committed, or the second copy
	// would get the upstream tree back (no build: the first fork proved it).
	status := exec.Command("git", "status", "--porcelain")
	status.Dir = dest
	if dirty, err := status.Output(); err != nil || len(dirty) > 0 {
		t.Errorf("the copy has uncommitted changes after fork.sh (%v):\n%.2000s", err, dirty)
	}
	dest2 := filepath.Join(t.TempDir(), "shop2")
	const newPath2 = "example.net/other/shop"
	cmd = exec.Command(filepath.Join(dest, "scripts", "fork.sh"), newPath2, dest2, dest)
	cmd.Env = append(os.Environ(), "GOWORK=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the copy's fork.sh: %v\n%s", err, out)
	}
	grep = exec.Command("git", "grep", "-l", "-e", "github.com/shanhai-dev/shanhai", "-e", newPath)
	grep.Dir = dest2
	if left, err := grep.Output(); err == nil || len(left) > 0 {
		t.Errorf("the fork of the copy still names an earlier module path in:\n%s", left)
	}
	mod, err = os.ReadFile(filepath.Join(dest2, "services", "order", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(mod), "module "+newPath2+"/services/order\n") {
		t.Errorf("the fork of the copy: services/order/go.mod starts %q, want module %s/services/order",
			strings.SplitN(string(mod), "\n", 2)[0], newPath2)
	}
}

// goflags is the GOFLAGS the go command uses here, from the environment or
// go env -w.
func goflags(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOFLAGS").Output()
	if err != nil {
		t.Fatalf("go env GOFLAGS: %v", err)
	}
	return strings.TrimSpace(string(out))
}
